"""`dyadgen prepare-raw`: raw side-by-side videos with stereo audio -> SocioEmoDialog's processed layout."""

from __future__ import annotations

import argparse

from dyadgen.data.prepare_raw import prepare_raw


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", required=True, metavar="DIR", help="folder of raw <name>.mp4 files (and optional "
                        "<name>_{left,right}_speaker_diarization_asr.json turn files beside them)")
    parser.add_argument("--out", required=True, metavar="ROOT", help="dataset root to write")


def run(args: argparse.Namespace) -> int:
    s = prepare_raw(args.raw, args.out)
    print(f"prepared {s['videos']} videos ({s['turns']} turns; turns from ASR json: {s['asr']}, from voice "
          f"activity: {s['vad']}); {s['resumed']} already done; skipped {len(s['skipped'])}")
    for path, reason in s["skipped"]:
        print(f"  skipped {path}: {reason}")
    return 0
