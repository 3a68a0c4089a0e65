"""What happens to scores after a job: the store (the only code that speaks SQL) and the result files it
writes, then the three readers of stored results: the regression gate (`compare`, its noise model `noise`,
`tolerance` and the paired bootstrap `paired`), the chooser (`recommend`, `recommendation`, `paired_ties`), and
the reading back of results.csv (`result_files`). The report (genbench/report/) reads the same store."""
