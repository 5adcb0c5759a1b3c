"""llmlingua 0.2.2 in its side venv, answering JSON lines on stdin/stdout (no taco imports:
it runs under the side venv's python, ../shared/LLMLINGUA.md).

Started as: .venv-llmlingua/bin/python taco/eval/llmlingua_worker.py MODEL_FOLDER
(the folder name must contain ``bert-base-multilingual-cased``). It prints {"ready": true},
then answers each request {"text", "rate", "force_tokens", "labels"?} with {"seconds",
"origin_tokens", "compressed_tokens", "compressed_prompt"} (+ "words" and "labels" when
asked); only the compress_prompt call is timed.
"""

import json
import sys
import time

import torch
from llmlingua import PromptCompressor

WORD_SEP, LABEL_SEP = "\t\t|\t\t", " "


def main() -> None:
    torch.manual_seed(0)
    pc = PromptCompressor(model_name=sys.argv[1], use_llmlingua2=True, device_map="cpu")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.perf_counter()
        res = pc.compress_prompt(req["text"], rate=req["rate"], force_tokens=req["force_tokens"])
        seconds = time.perf_counter() - t0
        out = {
            "seconds": seconds,
            "origin_tokens": res["origin_tokens"],
            "compressed_tokens": res["compressed_tokens"],
            "compressed_prompt": res["compressed_prompt"],
        }
        if req.get("labels"):
            lab = pc.compress_prompt(
                req["text"],
                rate=req["rate"],
                force_tokens=req["force_tokens"],
                return_word_label=True,
                word_sep=WORD_SEP,
                label_sep=LABEL_SEP,
            )["fn_labeled_original_prompt"]
            pairs = [p.rsplit(LABEL_SEP, 1) for p in lab.split(WORD_SEP)]
            out["words"] = [w for w, _ in pairs]
            out["labels"] = [int(x) for _, x in pairs]
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
