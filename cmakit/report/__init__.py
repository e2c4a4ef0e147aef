"""Reports: the run summary, paper-layout tables and their writers, figures, the paper's own
numbers (``paper_tables/*.csv``)."""
