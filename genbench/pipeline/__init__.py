"""The run pipeline, one room each:

- jobs.py: what a job is (spec, result, failure) and the hashes that decide whether a recorded job is valid;
- worker.py: runs one job (train or load, score, time) and caches data, extractors and real features;
- scoring.py: scores one sampler setting (samples -> checks -> features -> EvalContext -> metrics);
- scorers.py: what differs per modality (tensors vs text), behind one interface;
- speed.py: sampling speed and cost;
- progress.py: progress bars and the training monitor;
- driver.py: `genbench run`'s resumable driver (`Runner`), the only part that talks to the results store.
"""
