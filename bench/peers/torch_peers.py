#!/usr/bin/env python3
"""GPU peers for `canopy bench` (see lib/bench/peers/torch.ts).

Reads {"device": N, "budgetMs": B, "jobs": [...]} as JSON on stdin and prints ONE line
of JSON on stdout:

    {"ok": true, "torch": "2.5.1", "transformers": "4.46.0", "cuda": "12.4",
     "device": "NVIDIA H100 80GB HBM3", "results": [
        {"id": "...", "peer": "torch sdpa flash", "medianMs": 1.23, "p10Ms": ..., "p90Ms": ...,
         "repeats": 40, "notes": {...}},
        {"id": "...", "peer": "torch sdpa cudnn", "error": "why it could not run"}]}

or {"ok": false, "reason": "..."} when it cannot run at all (no torch, no CUDA device).

Jobs:
  attention  PyTorch scaled_dot_product_attention, one backend at a time
             (prefill and decode: FLASH_ATTENTION and CUDNN_ATTENTION; tree: EFFICIENT_ATTENTION
             with a boolean ancestor mask, as no fused backend takes a tree); times one call.
  generate   Hugging Face transformers LlamaForCausalLM, randomly initialised with the given
             shape, greedy generate() of maxTokens new tokens after promptLen prompt ids
             ((i * 7919) % vocab, as canopy's rows use); plain, and assisted generation with a
             draft made of the target's first draftLayers layers (weights shared). Reports
             milliseconds per generated token after the first (the first one, TTFT, is
             timed separately with max_new_tokens=1).

Timing: warm-up calls, then repeats until the time budget is spent (at least 3), each
call bracketed by torch.cuda.synchronize(); median and 10th/90th percentiles.

CANOPY_TORCH_PEERS_CPU=1 lets it run on the CPU (to check the script without a GPU; the
figures are then meaningless as peers of CUDA rows).
"""

import json
import os
import sys
import time


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def percentile(sorted_values, p):
    i = min(len(sorted_values) - 1, max(0, round(p * (len(sorted_values) - 1))))
    return sorted_values[i]


def time_calls(fn, sync, budget_ms, warmup=2, min_repeats=3, max_repeats=200):
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    start = time.perf_counter()
    while len(samples) < max_repeats and (len(samples) < min_repeats or (time.perf_counter() - start) * 1e3 < budget_ms):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return {
        "medianMs": percentile(samples, 0.5),
        "p10Ms": percentile(samples, 0.1),
        "p90Ms": percentile(samples, 0.9),
        "repeats": len(samples),
    }


def short_error(e):
    text = str(e).strip().split("\n")[0]
    return f"{type(e).__name__}: {text[:300]}"


def attention_job(torch, job, device, sync, budget_ms):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F

    dtypes = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
    dtype = dtypes[job["dtype"]]
    b, lq, lk = job["batch"], job["qLen"], job["kvLen"]
    hq, hkv, d = job["numQoHeads"], job["numKvHeads"], job["headDim"]
    mode = job["mode"]
    gen = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(b, hq, lq, d, device=device, dtype=dtype, generator=gen)
    k = torch.randn(b, hkv, lk, d, device=device, dtype=dtype, generator=gen)
    v = torch.randn(b, hkv, lk, d, device=device, dtype=dtype, generator=gen)
    mask = None
    if mode == "tree":
        parents = job["parents"]
        n = len(parents)
        prefix = lk - n
        m = torch.zeros(n, lk, dtype=torch.bool)
        m[:, :prefix] = True
        for i, p in enumerate(parents):
            if p >= 0:
                m[i, prefix : prefix + n] = m[p, prefix : prefix + n]
            m[i, prefix + i] = True
        mask = m.to(device)
    backends = {
        "prefill": [("torch sdpa flash", SDPBackend.FLASH_ATTENTION), ("torch sdpa cudnn", SDPBackend.CUDNN_ATTENTION)],
        "decode": [("torch sdpa flash", SDPBackend.FLASH_ATTENTION), ("torch sdpa cudnn", SDPBackend.CUDNN_ATTENTION)],
        "tree": [("torch sdpa mem-efficient (mask)", SDPBackend.EFFICIENT_ATTENTION)],
    }[mode]
    results = []
    for name, backend in backends:
        notes = {}
        kk, vv = k, v
        kwargs = {"is_causal": mode == "prefill", "attn_mask": mask}
        if hq != hkv:
            kwargs["enable_gqa"] = True

        def call():
            return F.scaled_dot_product_attention(q, kk, vv, **kwargs)

        try:
            with sdpa_kernel([backend]):
                try:
                    call()
                except (TypeError, RuntimeError) as e:
                    # torch < 2.5 has no enable_gqa, and some backends refuse it (with a mask, say):
                    # expand K/V to every query head (outside the timing) and try once more.
                    if "enable_gqa" not in kwargs:
                        raise
                    kwargs.pop("enable_gqa")
                    kk = k.repeat_interleave(hq // hkv, dim=1)
                    vv = v.repeat_interleave(hq // hkv, dim=1)
                    notes["gqa"] = f"K/V expanded per query head ({short_error(e)})"
                    call()
                t = time_calls(call, sync, budget_ms)
            if notes:
                t["notes"] = notes
            results.append({"id": job["id"], "peer": name, **t})
        except Exception as e:  # a backend refusing a shape or dtype is a result, not a failure
            results.append({"id": job["id"], "peer": name, "error": short_error(e)})
    del q, k, v
    return results


def generate_job(torch, job, device, sync, budget_ms):
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
    except Exception as e:
        reason = f"transformers is not importable ({short_error(e)})"
        return [{"id": job["id"], "peer": "transformers generate", "error": reason}]
    dtypes = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
    dtype = dtypes[job["dtype"]]
    m = job["model"]
    prompt_len, max_tokens = job["promptLen"], job["maxTokens"]

    # transformers >= 5 takes RoPE settings as rope_parameters (a dict); older ones as rope_theta.
    import inspect

    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        rope = {"rope_parameters": {"rope_type": "default", "rope_theta": m["ropeTheta"]}}
    else:
        rope = {"rope_theta": m["ropeTheta"]}

    def config(layers):
        return LlamaConfig(
            **rope,
            hidden_size=m["dim"],
            intermediate_size=m["hiddenDim"],
            num_hidden_layers=layers,
            num_attention_heads=m["nHeads"],
            num_key_value_heads=m["nKvHeads"],
            head_dim=m["headDim"],
            vocab_size=m["vocabSize"],
            rms_norm_eps=m["normEps"],
            tie_word_embeddings=m["tiedEmbeddings"],
            max_position_embeddings=prompt_len + max_tokens + 64,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )

    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config(m["nLayers"])).to(dtype).eval()
    model.generation_config.eos_token_id = None  # never stop early: every run makes max_tokens tokens
    model.generation_config.pad_token_id = 0
    ids = torch.tensor([[(i * 7919) % m["vocabSize"] for i in range(prompt_len)]], device=device)
    mask = torch.ones_like(ids)
    results = []

    def run(n, **kw):
        with torch.inference_mode():
            return model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=n, min_new_tokens=n, **kw)

    def per_token(name, **kw):
        # TTFT: one new token (prefill + first step). Per token: (time for max_tokens - TTFT) / (max_tokens - 1).
        ttft = time_calls(lambda: run(1, **kw), sync, budget_ms / 4, warmup=1, min_repeats=2, max_repeats=10)
        full = time_calls(lambda: run(max_tokens, **kw), sync, budget_ms, warmup=1, min_repeats=2, max_repeats=10)
        out = run(max_tokens, **kw)
        made = out.shape[1] - prompt_len
        ms = max(1e-6, (full["medianMs"] - ttft["medianMs"]) / max(1, made - 1))
        spread = lambda x: max(1e-6, (x - ttft["medianMs"]) / max(1, made - 1))
        notes = {"tokens/s": 1000.0 / ms, "TTFT ms": ttft["medianMs"], "new tokens": int(made)}
        r = {"id": job["id"], "peer": name, "medianMs": ms, "p10Ms": spread(full["p10Ms"]), "p90Ms": spread(full["p90Ms"]), "repeats": full["repeats"], "notes": notes}
        return r, out

    try:
        plain, plain_out = per_token("transformers generate")
        results.append(plain)
    except Exception as e:
        results.append({"id": job["id"], "peer": "transformers generate", "error": short_error(e)})
        plain_out = None
    k = job.get("draftLayers")
    if k:
        name = f"transformers assisted (draft: first {k} layers)"
        try:
            with torch.device(device):
                draft = LlamaForCausalLM(config(k)).to(dtype).eval()
            draft.load_state_dict(model.state_dict(), strict=False)  # embeddings, the first k layers, norm, head
            draft.generation_config.eos_token_id = None
            draft.generation_config.pad_token_id = 0
            assisted, assisted_out = per_token(name, assistant_model=draft)
            if plain_out is not None:
                same = plain_out.shape == assisted_out.shape and bool((plain_out == assisted_out).all())
                assisted["notes"]["same tokens as plain"] = "yes" if same else "no"
            results.append(assisted)
            del draft
        except Exception as e:
            results.append({"id": job["id"], "peer": name, "error": short_error(e)})
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def main():
    try:
        request = json.loads(sys.stdin.read() or "{}")
        jobs = request.get("jobs", [])
        budget_ms = float(request.get("budgetMs", 1000))
        index = int(request.get("device", 0))
    except Exception as e:
        emit({"ok": False, "reason": f"torch_peers.py could not read its request: {short_error(e)}"})
        return 0
    try:
        import torch
    except Exception as e:
        emit({"ok": False, "reason": f"torch is not importable by {sys.executable} ({short_error(e)}); install PyTorch with CUDA for the GPU peers"})
        return 0
    allow_cpu = os.environ.get("CANOPY_TORCH_PEERS_CPU") == "1"
    if torch.cuda.is_available():
        if index >= torch.cuda.device_count():
            emit({"ok": False, "reason": f"torch sees {torch.cuda.device_count()} CUDA device(s); cuda:{index} is not one of them"})
            return 0
        device = torch.device(f"cuda:{index}")
        torch.cuda.set_device(device)
        sync = lambda: torch.cuda.synchronize(device)
        name = torch.cuda.get_device_name(device)
    elif allow_cpu:
        device = torch.device("cpu")
        sync = lambda: None
        name = "cpu (CANOPY_TORCH_PEERS_CPU=1)"
    else:
        emit({"ok": False, "reason": f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False; torch.version.cuda={torch.version.cuda})"})
        return 0
    try:
        import transformers

        tf_version = transformers.__version__
    except Exception:
        tf_version = None
    results = []
    for job in jobs:
        kind = job.get("kind")
        try:
            if kind == "attention":
                results.extend(attention_job(torch, job, device, sync, budget_ms))
            elif kind == "generate":
                results.extend(generate_job(torch, job, device, sync, budget_ms))
            else:
                results.append({"id": str(job.get("id")), "peer": "torch", "error": f"unknown job kind {kind!r}"})
        except Exception as e:
            results.append({"id": str(job.get("id")), "peer": "torch", "error": short_error(e)})
    out = {"ok": True, "torch": torch.__version__, "cuda": torch.version.cuda, "device": name, "results": results}
    if tf_version:
        out["transformers"] = tf_version
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
