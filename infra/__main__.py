"""Pulumi entry point (`main: infra/` in Pulumi.yaml): load config -> plan -> components -> exports."""

from infra.program import build

build()
