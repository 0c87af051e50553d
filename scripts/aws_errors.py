"""Any AWS failure as one line and its exit status (docs/jobs.md), without a traceback. Only botocore
here, so `scripts.common` (every command's error handling) can use it without importing the jobs' AWS
module."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

AWS_FAILURE = 4          # exit status: AWS could not be read or answered unexpectedly (docs/jobs.md)


def is_aws_error(err: BaseException) -> bool:
    return isinstance(err, ClientError | BotoCoreError | ResponseParserError)


def describe_error(err: BaseException) -> str:
    """One line for any AWS failure: the code and message AWS sent, or what botocore could not do."""
    if isinstance(err, ClientError):
        info = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return (f"{err.operation_name}: AWS answered {info.get('Code') or status or 'an error'}"
                f"{': ' + str(info.get('Message')) if info.get('Message') else ''}")
    if isinstance(err, ResponseParserError):
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"AWS sent an answer botocore could not parse (an outage or a proxy in the way?): {first[:200]}"
    return str(err).splitlines()[0] if str(err) else type(err).__name__
