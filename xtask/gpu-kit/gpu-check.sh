#!/usr/bin/env bash
# relata's GPU check (built into the kit by `cargo xtask gpu-kit`; docs/backends.md, "GPU kit").
#
# Unpacks the kit's binaries, finds the NVIDIA driver's Vulkan ICD and EGL vendor files (or
# writes them where a container mounts the driver's libraries without them), then for every
# method runs `train-bench` on each GPU backend and `train_reference.py` (PyTorch, eager) on the
# same GPU, sampling `nvidia-smi` for each run's peak memory. Prints one JSON object (also
# written to $OUT/gpu-check.json when OUT is set) with every run and the relata/PyTorch ratios.
#
#   bash target/gpu-kit/gpu-check.sh                       # paper shapes, wgpu + vulkan + tch-cuda
#   bash target/gpu-kit/gpu-check.sh --size tiny --backends wgpu --reference-device cpu
#
# Options: --size paper|tiny, --methods cmbh,hrem,isl,csrms, --backends wgpu,vulkan,tch-cuda
# (tch-cuda needs relata-tch; `tch` runs it on the CPU), --steps N (per epoch, default 10),
# --reference-device cuda|cpu, --python PY (with torch), --timeout S (per run, default 300).
set -uo pipefail

KIT="$(cd "$(dirname "$0")" && pwd)"
SIZE=paper
METHODS=cmbh,hrem,isl,csrms
BACKENDS=wgpu,vulkan,tch-cuda
STEPS=10
REF_DEVICE=cuda
PY=python3
TIMEOUT=300
while (($#)); do
  case "$1" in
    --size) SIZE="$2"; shift 2 ;;
    --methods) METHODS="$2"; shift 2 ;;
    --backends) BACKENDS="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --reference-device) REF_DEVICE="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    *) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
  esac
done

WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
RUNS="$WORK/runs"
mkdir -p "$RUNS"
log() { echo "[gpu-check] $*" >&2; }

# 1. The binaries each backend needs.
binary_for() {
  case "$1" in
    wgpu|wgpu-gl) echo relata-wgpu ;;
    vulkan) echo relata-vulkan ;;
    tch|tch-cuda*) echo relata-tch ;;
    *) return 1 ;;
  esac
}
for b in ${BACKENDS//,/ }; do
  bin=$(binary_for "$b") || { log "unknown backend $b"; exit 2; }
  if [[ ! -x "$WORK/$bin" ]]; then
    [[ -f "$KIT/$bin.xz" ]] || { log "$KIT/$bin.xz missing: build it with cargo xtask gpu-kit"; exit 2; }
    xz -dc "$KIT/$bin.xz" > "$WORK/$bin" && chmod +x "$WORK/$bin"
  fi
done

# 2. The driver. Containers often mount libGLX_nvidia / libEGL_nvidia without the JSON files that
#    point the Vulkan and EGL loaders at them.
if command -v nvidia-smi >/dev/null 2>&1; then
  GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
  log "GPU: $GPU"
else
  GPU=""
  log "no nvidia-smi: memory is not sampled"
fi
find_lib() { ldconfig -p 2>/dev/null | awk -v n="$1" '$1 == n { print $NF; exit }'; }
if [[ -z "${VK_ICD_FILENAMES:-}" ]]; then
  for f in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
           /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json; do
    [[ -f "$f" ]] && { export VK_ICD_FILENAMES="$f"; break; }
  done
  if [[ -z "${VK_ICD_FILENAMES:-}" ]] && lib=$(find_lib libGLX_nvidia.so.0) && [[ -n "$lib" ]]; then
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' \
      "$lib" > "$WORK/nvidia_icd.json"
    export VK_ICD_FILENAMES="$WORK/nvidia_icd.json"
  fi
fi
if [[ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ]]; then
  for f in /usr/share/glvnd/egl_vendor.d/10_nvidia.json /etc/glvnd/egl_vendor.d/10_nvidia.json; do
    [[ -f "$f" ]] && { export __EGL_VENDOR_LIBRARY_FILENAMES="$f"; break; }
  done
  if [[ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ]] && lib=$(find_lib libEGL_nvidia.so.0) && [[ -n "$lib" ]]; then
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s"}}\n' "$lib" > "$WORK/10_nvidia.json"
    export __EGL_VENDOR_LIBRARY_FILENAMES="$WORK/10_nvidia.json"
  fi
fi
log "VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-(loader default)}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$WORK/xdg}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)

# 3. One run: the command's JSON (its last line that parses) plus the peak memory nvidia-smi saw
#    above the level before it started.
used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; }
measure() { # name, command...
  local name="$1"; shift
  local base="" sampler=""
  if [[ -n "$GPU" ]]; then
    base=$(used)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$RUNS/$name.mem" 2>/dev/null &
    sampler=$!
  fi
  log "$name: $*"
  timeout "$TIMEOUT" "$@" > "$RUNS/$name.out" 2> "$RUNS/$name.err"
  local rc=$?
  [[ -n "$sampler" ]] && kill "$sampler" 2>/dev/null
  "$PY" - "$RUNS/$name" "$rc" "${base:-}" <<'EOF'
import json, sys
stem, rc, base = sys.argv[1], int(sys.argv[2]), sys.argv[3]
result = None
text = open(stem + ".out").read()
# train-bench prints one pretty JSON object; the reference prints one line.
for start in [i for i, c in enumerate(text) if c == "{"]:
    try:
        result = json.loads(text[start:])
        break
    except ValueError:
        continue
if result is None:
    err = open(stem + ".err").read().strip().splitlines()
    result = {"error": f"exit {rc}" + (" (timeout)" if rc == 124 else ""), "stderr": err[-15:]}
try:
    samples = [int(l) for l in open(stem + ".mem") if l.strip().isdigit()]
    if samples and base.strip():
        result["peak_mib"] = max(samples) - int(base)
except FileNotFoundError:
    pass
json.dump(result, open(stem + ".json", "w"))
EOF
}

for m in ${METHODS//,/ }; do
  for b in ${BACKENDS//,/ }; do
    bin=$(binary_for "$b")
    if [[ "$bin" == relata-tch ]]; then
      LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        measure "$m.$b" "$WORK/$bin" train-bench "$m" --size "$SIZE" --steps "$STEPS" --device "$b" --scratch "$WORK"
    else
      measure "$m.$b" "$WORK/$bin" train-bench "$m" --size "$SIZE" --steps "$STEPS" --device "$b" --scratch "$WORK"
    fi
  done
  measure "$m.pytorch" "$PY" "$KIT/train_reference.py" "$m" --size "$SIZE" --device "$REF_DEVICE" --steps "$STEPS"
done

# 4. One JSON object: every run, and relata / PyTorch step time (> 1: relata slower).
"$PY" - "$RUNS" "$METHODS" "$BACKENDS" "$GPU" "$SIZE" <<'EOF' | tee "${OUT:-$WORK}/gpu-check.json"
import json, sys
runs, methods, backends, gpu, size = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), sys.argv[4], sys.argv[5]
report = {"gpu": gpu or None, "size": size, "methods": {}}
for m in methods:
    ref = json.load(open(f"{runs}/{m}.pytorch.json"))
    entry = {"pytorch": ref}
    for b in backends:
        r = json.load(open(f"{runs}/{m}.{b}.json"))
        if "step_seconds" in r and "step_seconds" in ref:
            r["time_ratio_vs_pytorch"] = r["step_seconds"] / ref["step_seconds"]
        if r.get("peak_mib") and ref.get("peak_mib"):
            r["memory_ratio_vs_pytorch"] = r["peak_mib"] / ref["peak_mib"]
        entry[b] = r
    report["methods"][m] = entry
print(json.dumps(report, indent=1))
EOF
