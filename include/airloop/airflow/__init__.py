"""The Airflow side of airloop: the only package that imports Airflow."""
