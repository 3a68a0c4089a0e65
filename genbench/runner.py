"""`genbench run`'s runner, kept as a name: the pipeline lives in genbench/pipeline/ (jobs, worker, scoring, one
scorer per modality, speed, driver). `from genbench.runner import Runner` keeps working."""

from genbench.pipeline.driver import STALE_TEMP_S, Runner, RunSummary  # noqa: F401
from genbench.pipeline.jobs import (JobFailure, JobResult, JobSpec, code_version, harness_code_version,  # noqa: F401
                                    job_code_version, job_id_for, make_jobs, seed_everything)
from genbench.defaults import REAL_SUBSET_SEED  # noqa: F401
from genbench.pipeline.scorers import PREVIEW_N  # noqa: F401
from genbench.pipeline.scoring import check_samples, draw_samples, real_subset, score_samples  # noqa: F401
from genbench.pipeline.worker import Worker, run_job  # noqa: F401

__all__ = ["Runner", "RunSummary", "JobSpec", "JobResult", "JobFailure", "Worker", "run_job", "make_jobs",
           "job_id_for", "check_samples", "seed_everything", "score_samples", "REAL_SUBSET_SEED"]
