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


def build_tokenizer(extra_special: list[str] | None = None, **attributes: str):
    """A ``PreTrainedTokenizerFast`` over :func:`words`; special tokens first (``<pad>`` is 0).

    ``extra_special`` tokens of one family go after the words (the ids of the other tokens stay the
    same in every folder); ``attributes`` name special tokens the family's processor reads from the
    tokenizer (``context_image_token="<IMG_CONTEXT>"`` ...)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + TAGS + PUNCTUATION + words())}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIAL)
    tok.add_tokens(TAGS)
    extra = list(extra_special or [])
    for token in extra:
        tok.add_special_tokens([token])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=IM_END,
        **({"extra_special_tokens": dict(attributes)} if attributes else {}),
    )


CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def write_llava(folder: Path) -> None:
    """LLaVA-1.5 layout: CLIP image processor at 32 px, ``<image>`` expanded to 16 tokens (8 px patches)."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=CLIP_MEAN, image_std=CLIP_STD,
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



def write_llava_next(folder: Path) -> None:
    """LLaVA-NeXT layout: "anyres" tiling on a 32 px grid (32x32, 32x64, 64x32); each 32 px tile
    and the resized whole image give 16 features (8 px patches), plus a newline token per row."""
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
        image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]], image_mean=CLIP_MEAN, image_std=CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=build_tokenizer(), patch_size=8,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=chat_template("<image>"), image_token="<image>",
    )
    processor.save_pretrained(str(folder))


def write_llava_onevision(folder: Path) -> None:
    """LLaVA-OneVision layout: SigLIP-style 32 px tiles on the grid 32x32, 32x64, 64x32 (16 features
    each, 8 px patches), ``<image>`` for images and ``<video>`` for videos."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    image_processor = LlavaOnevisionImageProcessor(
        size={"height": 32, "width": 32}, image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]],
    )
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor, video_processor=LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32}),
        tokenizer=build_tokenizer(["<video>"]), num_image_tokens=16, vision_feature_select_strategy="full",
        chat_template=chat_template("<image>"), image_token="<image>", video_token="<video>",
    )
    processor.save_pretrained(str(folder))


def write_qwen3_vl(folder: Path) -> None:
    """Qwen3-VL layout: Qwen2-VL's image processor and the Qwen3-VL video processor, 8 px patches
    merged 2x2, images resized to 64x64 (16 image tokens)."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    kwargs = dict(patch_size=8, merge_size=2, temporal_patch_size=2,
                  size={"shortest_edge": 64 * 64, "longest_edge": 64 * 64})
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**kwargs), video_processor=Qwen3VLVideoProcessor(**kwargs),
        tokenizer=build_tokenizer(), chat_template=chat_template("<|vision_start|><|image_pad|><|vision_end|>"),
    )
    processor.save_pretrained(str(folder))


def write_idefics3(folder: Path) -> None:
    """Idefics3 / SmolVLM layout: one 32 px global image (no splitting into tiles), 8 px patches
    shuffled 2x2 into 4 image tokens between ``<fake_token_around_image>`` and ``<global-img>``."""
    from transformers import Idefics3ImageProcessor, Idefics3Processor

    image_processor = Idefics3ImageProcessor(
        do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
    )
    tokenizer = build_tokenizer(["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"])
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=chat_template("<image>"))
    processor.save_pretrained(str(folder))


def write_smolvlm(folder: Path) -> None:
    """SmolVLM2 layout: Idefics3's (one 32 px global image, 8 px patches shuffled 2x2 into 4 image
    tokens) with SmolVLM's image and video processors."""
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    size = {"longest_edge": 32}
    image_processor = SmolVLMImageProcessor(do_image_splitting=False, size=size, max_image_size=size)
    tokenizer = build_tokenizer(["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"])
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
                                 image_seq_len=4, chat_template=chat_template("<image>"))
    processor.save_pretrained(str(folder))


def write_paligemma(folder: Path) -> None:
    """PaliGemma layout: SigLIP image processor at 32 px (16 image tokens of 8 px patches); the
    processor adds its ``<loc....>``/``<seg...>`` detection tokens to the tokenizer."""
    from transformers import PaliGemmaProcessor, SiglipImageProcessor

    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=build_tokenizer(),
                                   chat_template=chat_template("<image>"))
    processor.save_pretrained(str(folder))


def write_internvl(folder: Path) -> None:
    """InternVL layout: one 32 px tile per image (at most one patch), 8 px patches shuffled
    2x2 into 4 ``<IMG_CONTEXT>`` tokens between ``<img>`` and ``</img>``."""
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    tokens = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
              "video_token": "<video>"}
    tokenizer = build_tokenizer(list(tokens.values()), **tokens)
    image_processor = GotOcr2ImageProcessor(size={"height": 32, "width": 32}, max_patches=1,
                                            image_mean=CLIP_MEAN, image_std=CLIP_STD)
    processor = InternVLProcessor(
        image_processor=image_processor, video_processor=InternVLVideoProcessor(size={"height": 32, "width": 32}),
        tokenizer=tokenizer, image_seq_length=4, chat_template=chat_template("<IMG_CONTEXT>"),
    )
    processor.save_pretrained(str(folder))


WRITERS = {"llava_tiny": write_llava, "qwen2_vl_tiny": write_qwen2_vl, "qwen2_5_vl_tiny": write_qwen2_5_vl,
           "llava_next_tiny": write_llava_next, "llava_onevision_tiny": write_llava_onevision,
           "qwen3_vl_tiny": write_qwen3_vl, "idefics3_tiny": write_idefics3, "smolvlm_tiny": write_smolvlm,
           "paligemma_tiny": write_paligemma, "internvl_tiny": write_internvl}


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
