"""BLIP image captioning (``blip_caption``), on transformers' ``BlipForConditionalGeneration``.

The network is transformers' BLIP (a ViT image encoder and a BERT decoder with cross-attention);
this class adds what LAVIS adds around it: the tokenizer with ``[DEC]``, the caption loss
(prompt and padding masked, label-smoothed cross entropy) and prompted generation.

Model types: ``tiny`` (random init, a few layers, in-repo vocabulary; for tests and the demo),
``base_coco`` (ViT-B/16 at 384 px, BERT-base decoder) and ``large_coco`` (ViT-L/16 at 384 px).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ClassVar, Mapping

import torch

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.models.base_model import BaseModel, ModelOutput
from lavis.models.blip.beam_scoring import LENGTH_NORMALIZATIONS, LengthNormalization, lavis_beam_scoring
from lavis.models.blip.parts import (
    caption_labels,
    check_config_fields,
    smoothed_token_losses,
    text_config_for_tokenizer,
)
from lavis.models.blip.sdpa import shared_cross_attention_cache
from lavis.models.blip.tokenizer import load_blip_tokenizer

# State-dict keys of tied tensors: (alias, source). Checkpoints may hold only the source.
_TIED_KEYS = (
    ("blip.text_decoder.cls.predictions.decoder.weight", "blip.text_decoder.bert.embeddings.word_embeddings.weight"),
    ("blip.text_decoder.cls.predictions.decoder.bias", "blip.text_decoder.cls.predictions.bias"),
)
_HF_PREFIXES = ("vision_model.", "text_decoder.")


@registry.register_model("blip_caption")
class BlipCaption(BaseModel):
    """BLIP captioner: image -> caption, trained with the LAVIS caption loss.

    Args:
        vision_config: keys of ``transformers.BlipVisionConfig`` (``image_size``, ``patch_size``,
            ``hidden_size``, ``num_hidden_layers``, ...); unset keys take transformers' defaults.
        text_config: keys of ``transformers.BlipTextConfig``. ``vocab_size`` defaults to the
            tokenizer's length; the bos/pad/sep/eos ids always come from the tokenizer.
        tokenizer: a folder with ``vocab.txt`` (relative to the ``lavis`` package, e.g.
            ``assets/tokenizers/tiny``, or absolute) or a Hub repo id (``bert-base-uncased``).
        prompt: the text every caption starts with; its tokens are not scored by the loss and
            ``generate`` starts from it. Training captions must already contain it (the
            ``blip_caption`` text processor prepends it); ``forward`` does not add it.
        max_txt_len: captions are truncated to this many tokens (``[CLS]`` and ``[SEP]`` included).
        label_smoothing: of the caption cross entropy.
        length_normalization: how beam search ranks finished captions, ``sum of log-probs / length``.
            ``"lavis"``: length counts the prompt and not the final ``[SEP]``, as LAVIS 1.0.2
            (transformers 4.26) does; ``"transformers"``: length counts the generated tokens with
            ``[SEP]``, as transformers 5's ``generate`` does. The default is ``"lavis"`` for every
            model type, so that checkpoints converted from LAVIS give LAVIS' beam captions (checked
            in ``benchmarks/parity/``), the captions its published COCO/NoCaps scores came from.
            ``generate(length_normalization=...)`` overrides it for one call; see
            :mod:`lavis.models.blip.beam_scoring`.
    """

    TASK_METHODS = ("generate",)
    NESTED_CONFIGS: ClassVar[dict[str, str]] = {
        "vision_config": "transformers:BlipVisionConfig",
        "text_config": "transformers:BlipTextConfig",
    }

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        tokenizer: str = "bert-base-uncased",
        prompt: str = "a picture of ",
        max_txt_len: int = 40,
        label_smoothing: float = 0.1,
        length_normalization: LengthNormalization = "lavis",
    ):
        super().__init__()
        from transformers import BlipConfig, BlipForConditionalGeneration, BlipTextConfig, BlipVisionConfig

        if length_normalization not in LENGTH_NORMALIZATIONS:
            raise ConfigError(
                [f"model.length_normalization: {length_normalization!r} is not one of "
                 f"{', '.join(map(repr, LENGTH_NORMALIZATIONS))}"]
            )
        self.length_normalization: LengthNormalization = length_normalization
        vision_config, text_config = dict(vision_config), dict(text_config)
        check_config_fields("vision_config", vision_config, BlipVisionConfig)
        check_config_fields("text_config", text_config, BlipTextConfig)

        self.tokenizer = load_blip_tokenizer(tokenizer)
        tok = self.tokenizer
        text_config = text_config_for_tokenizer(text_config, tok)
        text_config["label_smoothing"] = float(label_smoothing)
        self.blip = BlipForConditionalGeneration(BlipConfig(vision_config=vision_config, text_config=text_config))

        self.prompt = prompt
        self.max_txt_len = int(max_txt_len)
        self.label_smoothing = float(label_smoothing)
        # [CLS] + prompt word pieces; [SEP] is not part of the prompt.
        self.prompt_length = len(tok(prompt).input_ids) - 1
        if self.max_txt_len <= self.prompt_length + 1:
            raise ConfigError(
                [f"model.max_txt_len: {max_txt_len} leaves no caption tokens after the {self.prompt_length}-token "
                 f"prompt {prompt!r}; use at least {self.prompt_length + 2}"]
            )
        if self.max_txt_len > self.max_positions:
            raise ConfigError(
                [f"model.max_txt_len: {max_txt_len} is longer than the decoder's "
                 f"text_config.max_position_embeddings ({self.max_positions})"]
            )

    # -- VLM seam ---------------------------------------------------------------------------------
    @property
    def vision_tower(self) -> torch.nn.Module:
        """The ViT image encoder (transformers ``BlipVisionModel``)."""
        return self.blip.vision_model

    @property
    def language_model(self) -> torch.nn.Module:
        """The caption decoder (transformers ``BlipTextLMHeadModel``)."""
        return self.blip.text_decoder

    @property
    def max_positions(self) -> int:
        """The longest token sequence the decoder accepts (prompt included)."""
        from transformers.models.blip.configuration_blip import BlipTextConfig

        text_config = self.blip.config.text_config
        assert isinstance(text_config, BlipTextConfig)  # BlipConfig turns the text_config block into one
        return int(text_config.max_position_embeddings)

    # -- building blocks ------------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """ViT features: ``image`` [B, 3, H, W] (normalized) -> [B, 1 + patches, vision hidden]."""
        return self.blip.vision_model(pixel_values=image.to(self.device)).last_hidden_state

    def tokenize(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder inputs for ``captions``: ``input_ids`` and ``attention_mask``, both [B, L].

        Padded to the longest caption, truncated to ``max_txt_len``; the first token is ``[DEC]``
        (in place of ``[CLS]``) and each caption ends with ``[SEP]``.
        """
        if isinstance(captions, str):
            raise TypeError("samples['text_input'] must be a list of captions, not one string")
        enc = self.tokenizer(
            list(captions), padding="longest", truncation=True, max_length=self.max_txt_len, return_tensors="pt"
        )
        input_ids = enc.input_ids.to(self.device)
        input_ids[:, 0] = self.tokenizer.bos_token_id
        return input_ids, enc.attention_mask.to(self.device)

    def targets(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Labels [B, L] for ``input_ids``: padding and the prompt positions set to -100 (ignored)."""
        return caption_labels(input_ids, self.tokenizer.pad_token_id, self.prompt_length)

    def decoder_logits(self, samples: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits and their labels for a batch.

        Returns:
            ``logits`` [B, L-1, V] where position t predicts token t+1, and ``labels`` [B, L-1]
            (the shifted targets, -100 where not scored).
        """
        image_embeds = self.encode_image(samples["image"])
        input_ids, attention_mask = self.tokenize(samples["text_input"])
        out = self.blip.text_decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            use_cache=False,
        )
        return out.logits[:, :-1, :], self.targets(input_ids)[:, 1:]

    def token_losses(self, samples: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token label-smoothed cross entropy [B, L-1] (0 where not scored) and the scored mask."""
        logits, labels = self.decoder_logits(samples)
        return smoothed_token_losses(logits, labels, self.label_smoothing), labels != -100

    # -- the model contract -----------------------------------------------------------------------
    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """Caption loss of a batch.

        Args:
            samples: ``"image"`` [B, 3, H, W] normalized pixels; ``"text_input"`` B captions that
                already start with the prompt (as the ``blip_caption`` train processor makes them).

        Returns:
            ``loss``: one mean over every scored token of the batch (as LAVIS); ``extras["n_tokens"]``.
        """
        losses, mask = self.token_losses(samples)
        n_tokens = mask.sum()
        return ModelOutput(loss=losses.sum() / n_tokens.clamp(min=1), extras={"n_tokens": n_tokens})

    @torch.no_grad()
    def generate(
        self,
        samples: dict[str, Any],
        use_nucleus_sampling: bool = False,
        num_beams: int = 3,
        max_length: int = 30,
        min_length: int = 10,
        top_p: float = 0.9,
        repetition_penalty: float = 1.0,
        num_captions: int = 1,
        length_normalization: LengthNormalization | None = None,
    ) -> list[str]:
        """Captions for ``samples["image"]`` [B, 3, H, W], continuing the prompt.

        ``max_length`` and ``min_length`` count the prompt tokens (``[DEC] a picture of`` is 4), as
        in LAVIS. Beam search by default; nucleus sampling (``top_p``, with top-k 50 as in LAVIS)
        with ``use_nucleus_sampling``. Only the generated tokens are decoded. Beams are ranked by
        ``length_normalization`` (``None``: the model's, see the class docstring).

        Returns:
            B * ``num_captions`` strings, the captions of image i at ``i * num_captions ...``.
        """
        if not use_nucleus_sampling and num_captions > num_beams:
            raise ValueError(f"num_captions={num_captions} needs num_beams >= {num_captions} for beam search")
        if max_length > self.max_positions:
            raise ValueError(f"max_length={max_length} exceeds the decoder's {self.max_positions} positions")
        if min_length > max_length:
            raise ValueError(f"min_length={min_length} is larger than max_length={max_length}")
        normalization = self.length_normalization if length_normalization is None else length_normalization
        if normalization not in LENGTH_NORMALIZATIONS:
            raise ValueError(
                f"length_normalization={normalization!r} is not one of {', '.join(map(repr, LENGTH_NORMALIZATIONS))}"
            )
        image_embeds = self.encode_image(samples["image"])
        batch = image_embeds.shape[0]
        prompt = self.tokenizer(self.prompt, return_tensors="pt").input_ids[:, :-1]  # drop [SEP]
        prompt[:, 0] = self.tokenizer.bos_token_id
        prompt = prompt.expand(batch, -1).to(self.device)

        kwargs: dict[str, Any] = dict(
            max_length=max_length,
            min_length=min_length,
            eos_token_id=self.tokenizer.sep_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            repetition_penalty=repetition_penalty,
            num_return_sequences=num_captions,
        )
        if use_nucleus_sampling:
            kwargs.update(do_sample=True, top_p=top_p, top_k=50, num_beams=1)
        else:
            kwargs.update(do_sample=False, num_beams=num_beams)
        decoder = self.blip.text_decoder
        lavis_beams = not use_nucleus_sampling and num_beams > 1 and normalization == "lavis"
        scoring = lavis_beam_scoring(decoder, self.tokenizer.sep_token_id) if lavis_beams else contextlib.nullcontext()
        with scoring:
            out = decoder.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device),
                cache=shared_cross_attention_cache(decoder, image_embeds),
                **kwargs,
            )
        new_tokens = out[:, prompt.shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)  # cleans up spaces, as LAVIS
        return [t.strip() for t in texts]

    # -- weights --------------------------------------------------------------------------------
    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept this model's layout, transformers' (``vision_model.*``, ``text_decoder.*``, as in
        the Hub repos) and the original LAVIS/BLIP layout (``visual_encoder.*``, converted by
        :mod:`lavis.models.blip.convert`); tied tensors stored once are restored, and buffers this
        model rebuilds itself (``position_ids``) are dropped."""
        from lavis.models.base_model import ConvertedStateDict
        from lavis.models.blip import convert

        origin: tuple[str, Callable[[str], str]] | None = None
        if convert.is_lavis_layout(state_dict):
            positions = self.blip.vision_model.embeddings.position_embedding.shape[1]
            state_dict = convert.lavis_to_ours(state_dict, num_image_positions=positions)
            origin = ("LAVIS", convert.ours_key_to_lavis)
        elif state_dict and all(k.startswith(_HF_PREFIXES) for k in state_dict):
            state_dict = {f"blip.{k}": v for k, v in state_dict.items()}
            origin = ("transformers", lambda k: k.removeprefix("blip."))
        state_dict = dict(state_dict)
        kept = self.state_dict(keep_vars=True).keys()
        for name, _ in self.named_buffers():
            if name not in kept:  # a non-persistent buffer (transformers 5: position_ids) is rebuilt
                state_dict.pop(name, None)
        for alias, source in _TIED_KEYS:
            if alias not in state_dict and source in state_dict:
                state_dict[alias] = state_dict[source]
        if origin is not None:
            return ConvertedStateDict(state_dict, layout=origin[0], original_name=origin[1])
        return state_dict
