"""The tuning subflow: successive-halving rounds whose trials fan out on the flow's task runner."""

from __future__ import annotations

from prefect import flow, get_run_logger, unmapped

from core.config import PipelineConfig
from core.search import Trial, TrialSpec, TuneResult, TuningData, halving_search, threads_per_trial
from tasks.tune import connect_task_runner, run_trial, share_tuning_data, tuning_task_runner


@flow(name="tune", log_prints=True)
def tune_flow(data: TuningData, config: PipelineConfig) -> list[TuneResult]:
    """Tune every candidate; each round's trials run as `trial` task runs on this flow's runner.

    Run it through `tune_candidates`, which picks the runner from `config.tuning`.
    """
    connect_task_runner(config.tuning)
    # Shipped once: on Dask every trial then reads it from the cluster, not from this process.
    shared = share_tuning_data.submit(data)

    def run_round(specs: list[TrialSpec]) -> list[Trial]:
        if len(specs) == 1 and config.tuning.runner == "threads":
            # A lone trial (a last round) runs in this flow's thread, on OpenMP threads for every
            # core: a worker thread runs one OpenMP thread only (see `core.threads`).
            return [run_trial(data, config, specs[0])]
        threads = threads_per_trial(config.tuning)
        futures = run_trial.map(unmapped(shared), unmapped(config), specs, unmapped(threads))
        return [future.result() for future in futures]

    results = halving_search(len(data.train), config, run_round)
    logger = get_run_logger()
    for result in results:
        logger.info(
            "%s: best validation %s %.4f with %s (%d trials on %d executors)",
            result.candidate,
            config.metric.name,
            result.best_score,
            result.best_params,
            len(result.trials),
            len({t.executor for t in result.trials}),
        )
    return results


def tune_candidates(data: TuningData, config: PipelineConfig) -> list[TuneResult]:
    """Run `tune_flow` as a subflow on the task runner `config.tuning` chooses.

    The data goes in as a future: Prefect stores a subflow's parameters, and would otherwise
    encode every row of the frames as JSON (seconds per 100k rows).
    """
    handed_over = share_tuning_data.submit(data)
    return tune_flow.with_options(task_runner=tuning_task_runner(config.tuning))(handed_over, config)
