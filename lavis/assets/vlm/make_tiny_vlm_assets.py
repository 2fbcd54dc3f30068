"""Write the tokenizer and processor folders of the ``tiny`` vision-language model types.

Each folder (``llava_tiny/``, ``qwen2_vl_tiny/``, ``qwen2_5_vl_tiny/``) is what ``transformers.AutoProcessor.from_pretrained``
reads: a fast tokenizer (``tokenizer.json``), the image processor of the real model family with a
small image size, the processor settings and a chat template. The ``tiny`` VLMs build from these
files and a tiny config of the real transformers class, so no download is needed.

The tokenizer is word-level over the vocabulary of the synthetic shapes data set (captions,
questions and answers), the numbers 0-99 (for boxes), a few prompt words and the special tokens of
a ChatML-style chat template (``<|im_start|>``, ``<|im_end|>``) plus each family's image token.
Text is split on whitespace and punctuation; ``decode`` joins words with single spaces.

Run ``python lavis/assets/vlm/make_tiny_vlm_assets.py`` after editing the lists below; the output
is deterministic and committed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent

PAD, UNK, BOS, IM_START, IM_END = "<pad>", "<unk>", "<s>", "<|im_start|>", "<|im_end|>"
#: image tokens of the families with a tiny type (each folder's tokenizer knows all of them)
IMAGE_TOKENS = ["<image>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"]
SPECIAL = [PAD, UNK, BOS, IM_START, IM_END, *IMAGE_TOKENS]
#: ordinary tokens that look like tags (format rewards use them); decode keeps them
TAGS = ["<answer>", "</answer>", "<think>", "</think>"]
PUNCTUATION = list("?.,:;!()[]")
PROMPT_WORDS = """user assistant system describe answer question box where find give word
only short long image picture what which color colour shape how many yes no zero four five""".split()


def words() -> list[str]:
    """Every ordinary word of the vocabulary, sorted (the shapes vocabulary is imported, not copied)."""
    from lavis.datasets.synthetic.shapes_render import KINDS, PALETTE
    from lavis.datasets.synthetic.shapes_text import CAPTION_WORDS, NUMBER_WORDS, QA_EXTRA_WORDS

    found = set(CAPTION_WORDS) | set(QA_EXTRA_WORDS) | set(NUMBER_WORDS) | set(KINDS) | set(PALETTE)
    found |= set(PROMPT_WORDS) | {str(i) for i in range(100)}
    return sorted(found)


def chat_template(image_text: str) -> str:
    """ChatML-style template; ``{"type": "image"}`` content items become ``image_text``."""
    return (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for item in message['content'] %}"
        "{% if item['type'] == 'image' %}{{ '" + image_text + "' }}"
        "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "{{ '<|im_end|>\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` over :func:`words`; special tokens first (``<pad>`` is 0)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + TAGS + PUNCTUATION + words())}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIAL)
    tok.add_tokens(TAGS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=IM_END
    )


def write_llava(folder: Path) -> None:
    """LLaVA-1.5 layout: CLIP image processor at 32 px, ``<image>`` expanded to 16 tokens (8 px patches)."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=build_tokenizer(), patch_size=8,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=chat_template("<image>"), image_token="<image>",
    )
    processor.save_pretrained(str(folder))


def _write_qwen_vl(folder: Path, processor_class: str) -> None:
    """Qwen2-VL layout (Qwen2.5-VL reuses its image and video processors): 8 px patches merged 2x2,
    images resized to 64x64 (16 image tokens each)."""
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    kwargs = dict(patch_size=8, merge_size=2, temporal_patch_size=2,
                  size={"shortest_edge": 64 * 64, "longest_edge": 64 * 64})
    processor = getattr(transformers, processor_class)(
        image_processor=Qwen2VLImageProcessor(**kwargs), video_processor=Qwen2VLVideoProcessor(**kwargs),
        tokenizer=build_tokenizer(), chat_template=chat_template("<|vision_start|><|image_pad|><|vision_end|>"),
    )
    processor.save_pretrained(str(folder))


def write_qwen2_vl(folder: Path) -> None:
    _write_qwen_vl(folder, "Qwen2VLProcessor")


def write_qwen2_5_vl(folder: Path) -> None:
    _write_qwen_vl(folder, "Qwen2_5_VLProcessor")


WRITERS = {"llava_tiny": write_llava, "qwen2_vl_tiny": write_qwen2_vl, "qwen2_5_vl_tiny": write_qwen2_5_vl}


def main() -> None:
    for name, write in WRITERS.items():
        folder = HERE / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        write(folder)
        for path in sorted(folder.glob("*.json")):  # stable formatting for review
            data = json.loads(path.read_text(encoding="utf-8"))
            path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {folder}: {sorted(p.name for p in folder.iterdir())}")


if __name__ == "__main__":
    main()
