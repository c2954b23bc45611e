#!/usr/bin/env bash
# The digits study (docs/results.md section 5): nested (examples/digits.toml, 8 -> 16 -> 32 layers)
# against non-nested (examples/digits_plain.toml, 32 layers) convolutional ResNets on the UCI digits,
# seeds 1..10 of network.seed by default.  It is scripts/scan_peaks.sh --study digits: the same options
# (-h lists them), runs resumable, summary by scripts/summarize_scan.py OUT.
exec "$(dirname "$0")/scan_peaks.sh" --study digits "$@"
