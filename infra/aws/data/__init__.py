"""Data files shipped with the program: the AWS Load Balancer Controller IAM policy and the weights copy
script the copy Job runs (see SOURCES.md for where each comes from)."""
