"""Concluded studies: questions the project asked and answered, each file headed by its answer, kept so that the
answer can be checked and the study rerun (studies/README.md lists them)."""
