"""Compare this checkout with another git ref for one stack: resources added / changed / removed
(from `fleet render`), the monthly cost delta per pool (from `fleet plan`) and the policy pack's
verdicts on the result, as Markdown fit for a PR comment. The repository is the git checkout the stack
file is in (else the working directory's), never where the `fleet` package is installed; the base ref is
rendered with its own code (git archive into a temporary directory), and a base that cannot be rendered
is refused, never shown as empty."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scripts.common import REPO_ROOT, UserError, add_stack_args, stack_path

HELP = "resource and cost diff of this checkout against a git ref, as Markdown"
MAX_ROWS = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stack_args(parser)
    parser.add_argument("--base", metavar="REF", required=True, help="git ref to compare with, e.g. origin/main")
    parser.add_argument("--json", action="store_true", help="print the diff as JSON instead of Markdown")


# ---------------------------------------------------------------------------------------------- pure

def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: value}


def diff_records(base: list[dict], head: list[dict]) -> dict[str, list[dict]]:
    """Resources keyed by (type, name): added, removed, and changed with the input paths that moved."""
    a = {(r["type"], r["name"]): r for r in base}
    b = {(r["type"], r["name"]): r for r in head}
    changed = []
    for key in sorted(a.keys() & b.keys()):
        fa, fb = _flatten(a[key]["inputs"]), _flatten(b[key]["inputs"])
        paths = sorted(p for p in fa.keys() | fb.keys() if fa.get(p, "<unset>") != fb.get(p, "<unset>"))
        if paths:
            changed.append({"type": key[0], "name": key[1],
                            "changes": [{"path": p, "from": fa.get(p), "to": fb.get(p)} for p in paths]})
    return {"added": [{"type": t, "name": n} for t, n in sorted(b.keys() - a.keys())],
            "removed": [{"type": t, "name": n} for t, n in sorted(a.keys() - b.keys())],
            "changed": changed}


# Inputs of an EKS managed node group that EKS cannot update in place: changing one replaces the group
# (terraform-provider-aws aws_eks_node_group: ForceNew). For a GPU pool that drains every engine on it.
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
REPLACES_NODE_GROUP = ("amiType", "capacityType", "clusterName", "diskSize", "instanceTypes", "launchTemplate.id",
                       "launchTemplate.name", "nodeGroupName", "nodeGroupNamePrefix", "nodeRoleArn", "remoteAccess",
                       "subnetIds")


def node_group_replacements(base: list[dict], head: list[dict]) -> list[dict[str, Any]]:
    """GPU node groups (the ones with a taint) this change replaces: the pool and the inputs that force it."""
    before = {r["name"]: r for r in base if r["type"] == NODE_GROUP}
    out = []
    for record in head:
        old = before.get(record["name"])
        if record["type"] != NODE_GROUP or old is None or not record["inputs"].get("taints"):
            continue
        fa, fb = _flatten(old["inputs"]), _flatten(record["inputs"])
        forced = sorted({p.split("[")[0] for p in fa.keys() | fb.keys()
                         if fa.get(p, "<unset>") != fb.get(p, "<unset>")
                         and p.split("[")[0] in REPLACES_NODE_GROUP})
        if forced:
            pool = record["inputs"].get("tags", {}).get("llm-fleet/pool", record["name"])
            out.append({"pool": pool, "name": record["name"], "inputs": forced})
    return out


def replacement_markdown(replacements: list[dict[str, Any]]) -> list[str]:
    lines = []
    for item in replacements:
        lines += ["", f"> **Replaces the GPU node group of pool `{item['pool']}`** (changed: "
                      f"{', '.join(f'`{p}`' for p in item['inputs'])}): EKS creates the new group, then drains and "
                      "deletes the old one; every engine on the pool restarts and cold-starts on new nodes."]
    return lines


def cost_delta(base: dict | None, head: dict) -> dict[str, Any]:
    """Monthly USD per pool, before and after; a pool missing on one side counts as 0."""
    before = {p["name"]: p["monthlyUSD"] for p in (base or {}).get("pools", [])}
    after = {p["name"]: p["monthlyUSD"] for p in head.get("pools", [])}
    pools = [{"pool": n, "before": before.get(n, 0.0), "after": after.get(n, 0.0),
              "delta": round(after.get(n, 0.0) - before.get(n, 0.0), 2)} for n in sorted(before.keys() | after.keys())]
    total_before = (base or {}).get("monthlyUSD", 0.0)
    return {"pools": pools, "before": total_before, "after": head["monthlyUSD"],
            "delta": round(head["monthlyUSD"] - total_before, 2)}


def _usd(value: float, signed: bool = False) -> str:
    return f"{'+' if signed and value > 0 else '-' if value < 0 else ''}${abs(value):,.2f}"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return (text[:57] + "...") if len(text) > 60 else text


def policy_markdown(found: list[dict[str, str]] | None) -> list[str]:
    if found is None:
        return ["", "**Policy:** not checked (pulumi-policy is not installed: `pip install -e '.[dev]'`)"]
    mandatory = [v for v in found if v["level"] == "mandatory"]
    advisory = [v for v in found if v["level"] != "mandatory"]
    head = (f"**Policy:** {len(mandatory)} mandatory violation(s), {len(advisory)} advisory"
            + (" (`pulumi preview --policy-pack policy` will block this)" if mandatory else ""))
    lines = ["", head]
    for v in (mandatory + advisory)[:20]:
        lines.append(f"- {'**BLOCK**' if v['level'] == 'mandatory' else 'advisory'} `{v['policy']}` "
                     f"{v['resource']}: {v['message']}")
    return lines


def to_markdown(stack: str, base_ref: str, resources: dict[str, list[dict]], cost: dict[str, Any],
                policy: list[dict[str, str]] | None = None, replacements: list[dict[str, Any]] | None = None) -> str:
    lines = [f"### llm-fleet `{stack}`: this PR vs `{base_ref}`", *replacement_markdown(replacements or []), "",
             f"**Monthly cost:** {_usd(cost['before'])} -> {_usd(cost['after'])} "
             f"(**{_usd(cost['delta'], signed=True)}**/month)", "",
             "| pool | before | after | delta |", "|---|---:|---:|---:|"]
    lines += [f"| {p['pool']} | {_usd(p['before'])} | {_usd(p['after'])} | {_usd(p['delta'], signed=True)} |"
              for p in cost["pools"]]
    counts = {k: len(v) for k, v in resources.items()}
    lines += ["", f"**Resources:** {counts['added']} to add, {counts['changed']} to change, "
                  f"{counts['removed']} to remove", ""]
    rows = 0
    for kind, mark in (("removed", "-"), ("added", "+"), ("changed", "~")):
        for item in resources[kind]:
            if rows >= MAX_ROWS:
                break
            lines.append(f"- `{mark}` `{item['type']}` **{item['name']}**")
            for change in item.get("changes", [])[:8]:
                lines.append(f"  - `{change['path']}`: `{_short(change['from'])}` -> `{_short(change['to'])}`")
            if len(item.get("changes", [])) > 8:
                lines.append(f"  - ... and {len(item['changes']) - 8} more inputs")
            rows += 1
    total = sum(counts.values())
    if total > rows:
        lines.append(f"- ... and {total - rows} more (run `fleet diff --stack {stack} --base {base_ref}` locally)")
    if total == 0:
        lines.append("No resource changes.")
    lines += policy_markdown(policy)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- git + runs

def _git(repo: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *argv], capture_output=True, text=True, timeout=120)


def find_repo(stack_file: Path, cwd: Path | None = None) -> Path:
    """The checkout the stack file belongs to (`git -C` of its directory), else the working directory's;
    never the installed package's location, which may be another checkout or no checkout at all."""
    for where in (stack_file.resolve().parent, (cwd or Path.cwd()).resolve()):
        if where.is_dir():
            top = _git(where, "rev-parse", "--show-toplevel")
            if top.returncode == 0 and top.stdout.strip():
                return Path(top.stdout.strip()).resolve()
    raise UserError(f"{stack_file}: neither the stack file's directory nor the working directory is in a git "
                    f"checkout; run `fleet diff` inside the repository the stack file belongs to")


def _fleet_json(code_dir: Path, stack_file: Path, command: str, where: str) -> Any:
    """`fleet <command> --json` with the code in code_dir (its own checkout, not the installed package)."""
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    proc = subprocess.run([sys.executable, "-m", "scripts.fleet", command, "--stack-file", str(stack_file), "--json"],
                          cwd=code_dir, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        raise UserError(f"cannot render {where}: `fleet {command}` exited {proc.returncode}: {last}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise UserError(f"cannot render {where}: `fleet {command} --json` printed no JSON") from None


def base_outputs(base_ref: str, stack_file: Path, repo: Path) -> tuple[list[dict], dict | None]:
    """Render and plan the stack with the base ref's own code. A stack file that does not exist at the base
    ref (a stack new in this change) has an empty base: ([], None). Anything else that keeps the base from
    rendering is refused, never shown as an empty base."""
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}").returncode != 0:
        raise UserError(f"--base {base_ref}: not a commit in {repo} (fetch it first: git fetch origin)")
    relative = stack_file.resolve().relative_to(repo).as_posix()
    if _git(repo, "cat-file", "-e", f"{base_ref}:{relative}").returncode != 0:
        return [], None
    with tempfile.TemporaryDirectory(prefix="fleet-diff-") as tmp:
        archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", base_ref],
                                 capture_output=True, timeout=120)
        if archive.returncode != 0:
            raise UserError(f"--base {base_ref}: git archive failed: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True, timeout=120)
        where = f"{relative} at --base {base_ref}"
        # the render and the plan of the base run side by side (two processes)
        with ThreadPoolExecutor(max_workers=2) as pool:
            render = pool.submit(_fleet_json, Path(tmp), Path(tmp) / relative, "render", where)
            plan = pool.submit(_fleet_json, Path(tmp), Path(tmp) / relative, "plan", where)
            records = render.result()
            if not records:
                raise UserError(f"cannot render {where}: the program registered no resources")
            return records, plan.result()


def head_outputs(args: argparse.Namespace, stack_file: Path, repo: Path) -> tuple[list[dict], dict]:
    """The working tree's render and plan: in this process when the installed code is that checkout's,
    else with the checkout's own code, so both sides come from the repository the stack file is in."""
    if repo == REPO_ROOT.resolve():
        from infra.planning.plan import build_plan
        from scripts.cmd_render import render_records
        from scripts.common import load_stack

        return render_records(args), build_plan(load_stack(args)).to_json()
    where = f"{stack_file} with the code of {repo}"
    return _fleet_json(repo, stack_file.resolve(), "render", where), _fleet_json(repo, stack_file.resolve(), "plan",
                                                                                  where)


def run(args: argparse.Namespace) -> int:
    from scripts.policy_check import verdicts

    path = stack_path(args)
    repo = find_repo(path)
    if not path.resolve().is_relative_to(repo):
        raise UserError(f"{path}: not inside the git checkout {repo}, so it has no version at --base {args.base}; "
                        f"give a stack file tracked in the repository")
    # the base ref renders in subprocesses while the head renders: wall time is the slower of the two,
    # not their sum
    with ThreadPoolExecutor(max_workers=1) as pool:
        base = pool.submit(base_outputs, args.base, path, repo)
        head_records, head_plan = head_outputs(args, path, repo)
        base_records, base_plan = base.result()
    resources = diff_records(base_records, head_records)
    cost = cost_delta(base_plan, head_plan)
    policy = verdicts(head_records)
    new_stack = base_plan is None
    replaced = node_group_replacements(base_records, head_records)
    if args.json:
        json.dump({"stack": head_plan["stack"], "base": args.base, "baseMissing": new_stack, "resources": resources,
                   "cost": cost, "policy": policy, "replacements": replaced}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(to_markdown(head_plan["stack"], args.base, resources, cost, policy, replaced))
        if new_stack:
            sys.stdout.write(f"\n_The stack file does not exist at `{args.base}`: every resource is new._\n")
    return 0
