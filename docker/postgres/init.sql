-- Run once by the postgres image's entrypoint, on the first start with an empty data volume
-- (psql as POSTGRES_USER, with ON_ERROR_STOP). The two databases of the stack, owned by that user:
--   prefect  the Prefect server's database (PREFECT_SERVER_DATABASE_CONNECTION_URL)
--   mlflow   the MLflow tracking and model registry store (MLFLOW_BACKEND_STORE_URI)
-- Both servers create and migrate their tables themselves. `\gexec` runs the statement only when the
-- database is missing, so the script also works when POSTGRES_DB names one of them.
SELECT 'CREATE DATABASE prefect' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'prefect')\gexec
SELECT 'CREATE DATABASE mlflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow')\gexec
