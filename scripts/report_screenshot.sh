#!/usr/bin/env bash
# Remake docs/report.png, the picture of an HTML report in the README: a
# small transformer-shaped checkpoint (written by PyTorch) pruned to 80%
# with one global threshold, so layers end at different sparsities, shown
# by headless Chromium at 1400x900.
# Usage: bash scripts/report_screenshot.sh [BUILD]   (BUILD defaults to build)
set -euo pipefail
cd "$(dirname "$0")/.."
sparsify=$(realpath "${1:-build}/sparsify")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$tmp/model.pt" <<'PY'
import collections, sys, torch
torch.manual_seed(0)
sd = collections.OrderedDict()
sd["embed_tokens.weight"] = torch.randn(512, 64)
for i in range(3):
    p = f"layers.{i}."
    for name, shape, scale in (("self_attn.q_proj", (64, 64), 0.6 + 0.3 * i),
                               ("self_attn.o_proj", (64, 64), 1.0),
                               ("mlp.up_proj", (256, 64), 1.6 - 0.4 * i),
                               ("mlp.down_proj", (64, 256), 0.8 + 0.2 * i)):
        w = torch.randn(*shape) * scale
        if name == "mlp.up_proj" and i == 0:
            w[w.abs() < 0.8] = 0   # already partly sparse: a "before" bar
        sd[p + name + ".weight"] = w
        sd[p + name + ".bias"] = torch.zeros(shape[0])
    sd[p + "input_layernorm.weight"] = torch.ones(64)
torch.save(sd, sys.argv[1])
PY
(cd "$tmp" && "$sparsify" prune model.pt -o pruned.pt --sparsity 0.8 --scope global -q \
  --report-html report.html)
chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$tmp/profile" \
  --screenshot="$tmp/report.png" --window-size=1400,900 "file://$tmp/report.html" 2>/dev/null
cp "$tmp/report.png" docs/report.png
echo "wrote docs/report.png"
