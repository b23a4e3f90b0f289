"""Parallax from Python: the planner, simulator and layout search of
parallax-sim, called in-process through the same C code as the CLI.

    >>> import parallax
    >>> r = parallax.plan(model="llama2-70b", cluster="dgx-h100", gpus=64, tp=8, pp=2)
    >>> r["memory"]["fits"]
    True

Every function takes the CLI's options as keyword arguments (``gbs_tokens="4M"``
for ``--gbs-tokens 4M``; ``sp=True`` for ``--sp``; a list repeats a flag:
``fix=["tp=8", "zero=1"]``) and returns what ``parallax-sim COMMAND --json``
prints, as a dict (a list for models() and clusters()). ``model`` and
``cluster`` take a preset name, a file path, or a dict (written to a temporary
INI file: a model's keys are those of configs/models/*.ini's [model] group, or
a Hugging Face config.json's; a cluster's are {"cluster": {...}, "gpu": {...},
"node": {...}, "network": {...}} as in configs/clusters/*.ini). Bad input raises
ValueError with the sentence the CLI prints."""
import ctypes
import json
import os
import tempfile

__all__ = ["plan", "simulate", "search", "models", "clusters", "run"]
__version__ = "0.1.0"

_here = os.path.dirname(os.path.abspath(__file__))
if not os.environ.get("PARALLAX_DATA_DIR") and os.path.isdir(os.path.join(_here, "data", "configs")):
    os.environ["PARALLAX_DATA_DIR"] = os.path.join(_here, "data")

_lib = ctypes.CDLL(os.path.join(_here, "libparallax_api.so"))
_lib.px_api_run_json.restype = ctypes.c_void_p
_lib.px_api_run_json.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
_lib.px_api_free.restype = None
_lib.px_api_free.argtypes = [ctypes.c_void_p]


def _take(ptr):
    try:
        return ctypes.string_at(ptr).decode()
    finally:
        _lib.px_api_free(ptr)


def run(*args):
    """Run ``parallax-sim ARGS...`` (pass "--json" yourself) and return the
    parsed JSON it printed; raise ValueError with the CLI's error sentence."""
    err = ctypes.c_void_p()
    out = _lib.px_api_run_json(json.dumps([str(a) for a in args]).encode(), ctypes.byref(err))
    if not out:
        raise ValueError(_take(err.value) if err.value else "parallax-sim failed")
    return json.loads(_take(out))


def _ini_text(sections):
    lines = []
    for sec, kv in sections.items():
        lines.append(f"[{sec}]")
        for k, v in kv.items():
            lines.append(f"{k} = {str(v).lower() if isinstance(v, bool) else v}")
    return "\n".join(lines) + "\n"


def _spec_file(kind, value, tmp):
    """A dict model or cluster written to a file the C loaders read."""
    path = os.path.join(tmp, kind)
    if kind == "model" and ("model_type" in value or "architectures" in value):
        path += ".json"  # a Hugging Face config.json
        text = json.dumps(value)
    elif all(isinstance(v, dict) for v in value.values()):
        path += ".ini"
        text = _ini_text(value)
    elif kind == "model":
        path += ".ini"
        text = _ini_text({"model": value})
    else:
        raise ValueError("parallax: a cluster dict has sections: {'cluster': {...}, 'gpu': {...}, 'node': {...}, "
                         "'network': {...}} as in configs/clusters/*.ini")
    with open(path, "w") as f:
        f.write(text)
    return path


def _command(cmd, kwargs):
    if "help" in kwargs:
        raise ValueError("parallax: help is not an option here (see parallax-sim %s --help)" % cmd)
    with tempfile.TemporaryDirectory(prefix="parallax-") as tmp:
        args = [cmd]
        for key, value in kwargs.items():
            if value is None or value is False:
                continue
            if key in ("model", "cluster") and isinstance(value, dict):
                value = _spec_file(key, value, tmp)
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    args += [flag, str(v)]
            else:
                args += [flag, str(value)]
        args.append("--json")
        return run(*args)


def plan(**options):
    """``parallax-sim plan --json``: partition, bubble, memory per stage, FLOPs."""
    return _command("plan", options)


def simulate(**options):
    """``parallax-sim simulate --json``: step time, MFU, bubble, peak memory."""
    return _command("simulate", options)


def search(**options):
    """``parallax-sim search --json``: the fastest layouts that fit (or sizing)."""
    return _command("search", options)


def models():
    """``parallax-sim models --json``: the model presets."""
    return run("models", "--json")


def clusters():
    """``parallax-sim clusters --json``: the cluster presets."""
    return run("clusters", "--json")
