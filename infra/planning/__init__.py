"""Pure planning: catalogs, model architecture, sizing, loading, cost, schedules and the jobs' decisions.

No pulumi, pulumi_aws, pulumi_kubernetes or boto3 import: the program, the CLI and the jobs all reuse it.
"""
