from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False)
def daily():
    @task
    def extract():
        return 42

    @task
    def load(n: int):
        print(f"loaded {n} rows")

    load(extract())


daily()
