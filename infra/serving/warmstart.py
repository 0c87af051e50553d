"""What makes a replica's cold start short, as manifests (pure): the weights fetch at the connection
count the cold-start model assumes, compile caches kept per model revision (on the node, and for the
S3 paths restored from / saved to the bucket), and a DaemonSet that pre-pulls the engine image on a
pool's nodes while the weights are fetched. infra/planning/coldstart.py models each of them.
"""

from __future__ import annotations

from typing import Any

from infra.planning.coldstart import CACHE_PATHS, rates
from infra.stack.names import LABEL_POOL

# Pinned: peakcom/s5cmd v2.3.0, the upstream image (alpine, /bin/sh and busybox wget, binary at /s5cmd);
# seen pinned the same way in public manifests (find_string "peakcom/s5cmd:v2.3.0"). Speaks the AWS
# default credential chain (IRSA / Pod Identity of the reader service account).
S5CMD_IMAGE = "peakcom/s5cmd:v2.3.0"


def sync_script() -> str:
    """The weights fetch, at the connection count the cold-start model assumes (catalog/loading.yaml
    s5cmd: files in parallel x parts per file); files already on the node's NVMe are skipped."""
    f = rates()["s5cmd"]
    return ('echo "llm-fleet: syncing $SOURCE to $TARGET"\n'
            f'/s5cmd --numworkers {f["numworkers"]} sync --delete --concurrency {f["concurrency"]} '
            f'--part-size {f["partSizeMiB"]} "${{SOURCE}}*" "$TARGET/"\n'
            'echo "llm-fleet: weights in $TARGET are complete"\n')


# ---- compile caches (torch.compile, Triton, Inductor, DeepGEMM JIT, FlashInfer) per model revision
CACHE_VOLUME = "compile-cache"
CACHE_MOUNT = "/compile-cache"
CACHE_HOST_ROOT = "/var/lib/llm-fleet/compile-cache"     # hub / local paths (no bucket): node only
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"              # pinned; the pre-pull pod's only running container
_CACHE_ENV = {"VLLM_CACHE_ROOT": f"{CACHE_MOUNT}/vllm", "TRITON_CACHE_DIR": f"{CACHE_MOUNT}/triton",
              "TORCHINDUCTOR_CACHE_DIR": f"{CACHE_MOUNT}/inductor", "DG_JIT_CACHE_DIR": f"{CACHE_MOUNT}/deep_gemm",
              "FLASHINFER_WORKSPACE_BASE": f"{CACHE_MOUNT}/flashinfer"}
# Restore the caches a previous start of this revision and image saved (none yet: the first start compiles).
RESTORE_CACHE = """\
if /s5cmd ls "${CACHE_URI}.complete" >/dev/null 2>&1; then
  echo "llm-fleet: restoring compile caches from $CACHE_URI"
  /s5cmd --numworkers 64 sync "${CACHE_URI}*" /compile-cache/ || echo "llm-fleet: cache restore failed; compiling" >&2
else
  echo "llm-fleet: no saved compile caches at $CACHE_URI yet; this start compiles them"
fi
"""
# Once the engine answers /health, save the caches once per revision and image, then idle. TERM ends it
# at once (sh as PID 1 would otherwise hold the pod for the whole grace period).
IDLE = "while true; do sleep 3600 & wait $!; done"
_SAVE_CACHE = """\
trap 'exit 0' TERM INT
until wget -q -O /dev/null "http://127.0.0.1:{port}/health"; do sleep 10 & wait $!; done
if ! /s5cmd ls "${{CACHE_URI}}.complete" >/dev/null 2>&1; then
  echo saved > /tmp/complete
  /s5cmd --numworkers 64 sync /compile-cache/ "$CACHE_URI" && /s5cmd cp /tmp/complete "${{CACHE_URI}}.complete" \\
    && echo "llm-fleet: compile caches saved to $CACHE_URI"
fi
""" + IDLE + "\n"


def compile_cache_env(cache_dir: str | None) -> list[dict[str, Any]]:
    """Point every JIT cache the engines use at the per-revision cache volume."""
    return [{"name": k, "value": v} for k, v in _CACHE_ENV.items()] if cache_dir else []


def compile_cache_volume(cache_dir: str | None) -> dict[str, Any] | None:
    return None if cache_dir is None else {"name": CACHE_VOLUME,
                                           "hostPath": {"path": cache_dir, "type": "DirectoryOrCreate"}}


def save_cache_container(cache_uri: Any, region: str | None, port: int) -> dict[str, Any] | None:
    """A sidecar that uploads the compile caches after the first ready start of a revision, so the next
    node restores them instead of compiling (coldstart.CACHE_PATHS)."""
    if not cache_uri:
        return None
    return {"name": "save-compile-cache", "image": S5CMD_IMAGE,
            "command": ["/bin/sh", "-ec", _SAVE_CACHE.format(port=port)],
            "env": [{"name": "CACHE_URI", "value": cache_uri}, {"name": "AWS_REGION", "value": region}],
            "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT, "readOnly": True}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}}


def compile_cache_dir(method: str, model: str, revision: str, nvme_root: str) -> str:
    """Node directory of a model revision's compile caches: on the NVMe next to the weights where the
    node has it, else under /var/lib."""
    root = f"{nvme_root}/llm-fleet/compile-cache" if method == "nvme" else CACHE_HOST_ROOT
    return f"{root}/{model}/{revision}"


def cache_restored(method: str) -> bool:
    """Whether this path restores compile caches from the bucket (what the cold-start model assumes)."""
    return method in CACHE_PATHS


def prepull_daemonset(name: str, namespace: str, image: str, pool: str, node_selector: dict[str, str],
                      taint: str) -> dict[str, Any]:
    """Pull the engine image on every node of a pool as soon as it joins, while the engine pod's init
    container fetches the weights (kubelet pulls a pod's main image only after its init containers),
    so the image pull leaves the cold start's critical path (coldstart.PREPULL_IMAGE)."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "llm-fleet",
              "app.kubernetes.io/component": "image-prepull", LABEL_POOL: pool}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "nodeSelector": dict(node_selector),
                         "tolerations": [{"key": taint, "operator": "Exists", "effect": "NoSchedule"},
                                         {"key": LABEL_POOL, "operator": "Equal", "value": pool,
                                          "effect": "NoSchedule"}],
                         "initContainers": [{"name": "pull", "image": image, "command": ["/bin/sh", "-c", "true"],
                                             "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                                           "limits": {"memory": "64Mi"}}}],
                         "containers": [{"name": "pause", "image": PAUSE_IMAGE,
                                         "resources": {"requests": {"cpu": "1m", "memory": "8Mi"},
                                                       "limits": {"memory": "16Mi"}}}]}}}}
