"""The vision-language model seam: one registered class per transformers image-text-to-text family.

:class:`HFVisionLanguageModel` holds a transformers ``*ForConditionalGeneration`` model and its
``AutoProcessor`` and answers what post-training tasks ask of a model (see docs/post_training.md),
each with a default derived from the transformers config, the processor and the chat template:
modules and LoRA targets, the prompt and its image placeholders, batching per phase, the
multimodal inputs, generation (also from ``inputs_embeds``), likelihoods of replies and a scalar
value head. The table of members is in docs/post_training.md ("The seam").

A family whose transformers classes follow the usual layout needs only a subclass that names them
(see :mod:`lavis.models.vlm.llava`) and its YAMLs.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import torch
from torch import nn

from lavis.common.errors import ConfigError
from lavis.common.paths import package_path
from lavis.models.base_model import ModelOutput, BaseModel
from lavis.models.vlm import adapters, conversation as conv, embeds
from lavis.models.vlm.merge import load_value_head

#: keys of a collated batch that hold per-token values (padded like ``input_ids``)
TOKEN_KEYS = ("input_ids", "attention_mask", "labels", "token_type_ids", "mm_token_type_ids")


def _resolve_class(path: str) -> Any:
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _get_module(root: nn.Module, dotted: str) -> nn.Module | None:
    try:
        return root.get_submodule(dotted)
    except AttributeError:
        return None


class HFVisionLanguageModel(BaseModel):
    """A transformers image-text-to-text model behind the lavis model contract.

    Args:
        processor: a folder with the ``AutoProcessor`` files (relative to the ``lavis`` package,
            e.g. ``assets/vlm/llava_tiny``, or absolute) or a Hub repo id.
        hf_config: keys of the family's transformers config (``text_config``, ``vision_config``,
            ...) for a randomly initialised network; token ids and ``vocab_size`` that are not given
            come from the processor's tokenizer. Ignored when ``checkpoint`` is set.
        checkpoint: a transformers checkpoint (local folder or Hub repo id) whose weights are loaded
            with ``from_pretrained``; the repo of a published model type is fetched through the zoo
            (:func:`lavis.zoo.resolve.resolve_checkpoint_folder`). With ``value_head``, the head in
            the folder's ``value_head.safetensors`` is loaded when there is one (``merge`` writes it).
        attn_implementation: transformers' attention backend (``sdpa`` by default, ``eager``).
        max_length: conversations are cut to this many tokens after image tokens are expanded.
        freeze_vision_tower: stop gradients into the vision tower.
        lora: LoRA settings (``r``, ``alpha``, ``dropout``, ``target_modules``: a list of module
            names or ``auto`` for :attr:`default_lora_target`); ``None`` trains every weight.
        generation: defaults for ``generate`` over :attr:`default_generation_kwargs`.
        prompt: the user text of caption-style samples (``image`` + ``text_input``).
        value_head: add a scalar head on the decoder's last hidden state (``value_head``, a linear
            layer outside the LoRA wrapper, so it always trains): the score of a reward model and
            the value function of PPO; see ``output_values`` in :meth:`forward`.
    """

    TASK_METHODS = ("generate",)
    #: ``module:Class`` of the transformers model and config; set by each family
    HF_MODEL_CLASS: ClassVar[str] = ""
    HF_CONFIG_CLASS: ClassVar[str] = ""
    #: where the parts are in the transformers model, first match wins
    VISION_TOWER_NAMES: ClassVar[tuple[str, ...]] = ("model.vision_tower", "model.visual", "model.vision_model")
    PROJECTOR_NAMES: ClassVar[tuple[str, ...]] = ("model.multi_modal_projector", "model.visual.merger", "model.connector")
    LANGUAGE_MODEL_NAMES: ClassVar[tuple[str, ...]] = ("model.language_model", "model.text_model")
    #: batch keys ``generate`` of the transformers model does not take
    NON_GENERATE_PARAMS: ClassVar[tuple[str, ...]] = ("labels",)
    #: processor keywords a config may set under ``processing`` (image resolution and the like)
    PROCESSING_KEYWORDS: ClassVar[tuple[str, ...]] = ()
    #: why transformers' ``generate`` of the family cannot start from ``inputs_embeds``; empty if it can
    NO_EMBEDS_GENERATION: ClassVar[str] = ""
    BASE_WEIGHT_KEYS = ("checkpoint",)

    def __init__(
        self,
        processor: str,
        hf_config: Mapping[str, Any] | None = None,
        checkpoint: str | None = None,
        attn_implementation: str = "sdpa",
        max_length: int = 1024,
        freeze_vision_tower: bool = False,
        lora: Mapping[str, Any] | None = None,
        generation: Mapping[str, Any] | None = None,
        prompt: str = "describe the image",
        value_head: bool = False,
    ):
        super().__init__()
        from transformers import AutoProcessor

        if not self.HF_MODEL_CLASS:
            raise TypeError(f"{type(self).__name__} must set HF_MODEL_CLASS (e.g. 'transformers:LlavaForConditionalGeneration')")
        from lavis.zoo.resolve import resolve_checkpoint_folder

        self.processor_source = str(processor)
        local = package_path(processor)
        owner = type(self).__name__
        # else a Hub repo id: a published type's repo comes through the zoo (cached and checked)
        source = str(local) if local.exists() else resolve_checkpoint_folder(processor, owner)
        self.processor = AutoProcessor.from_pretrained(source)
        model_cls = _resolve_class(self.HF_MODEL_CLASS)
        if checkpoint is not None:
            folder = source if str(checkpoint) == str(processor) else resolve_checkpoint_folder(checkpoint, owner)
            self.hf_model = model_cls.from_pretrained(folder, attn_implementation=attn_implementation)
        else:
            if hf_config is None:
                raise ConfigError(["model.hf_config: give the transformers config of a randomly initialised "
                                   "network, or model.checkpoint: a transformers checkpoint to load"])
            config = self.build_hf_config(dict(hf_config))
            config._attn_implementation = attn_implementation
            self.hf_model = model_cls(config)
        self.max_length = int(max_length)
        self.prompt = prompt
        self._generation = dict(generation or {})
        self.value_head: nn.Linear | None = None
        if value_head:
            hidden = int(self.hf_model.config.get_text_config().hidden_size)
            self.value_head = nn.Linear(hidden, 1)
            nn.init.normal_(self.value_head.weight, std=1 / (hidden + 1) ** 0.5)
            nn.init.zeros_(self.value_head.bias)
            if checkpoint is not None:  # a merged reward model / PPO policy keeps its head next to the weights
                load_value_head(self.value_head, folder)
        if freeze_vision_tower:
            self.freeze_vision_tower()
        self.lora_config: dict[str, Any] | None = None
        if lora:
            adapters.apply_lora(self, lora)

    # -- configuration --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "HFVisionLanguageModel":
        """Build from a ``model`` block and load its weights (``finetuned``/``pretrained``, e.g. an
        SFT run's checkpoint) before LoRA adapters are added, so full checkpoints load into a
        model that then trains adapters only."""
        from omegaconf import DictConfig, OmegaConf

        plain: dict[str, Any] = dict(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg)  # type: ignore[arg-type]
        lora = plain.pop("lora", None)
        model = super().from_config(plain)
        assert isinstance(model, HFVisionLanguageModel)
        if lora:
            adapters.apply_lora(model, lora)
        return model

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A checkpoint without a value head (an SFT model that a reward model or PPO starts from)
        keeps this model's freshly initialised head; everything else loads strictly."""
        if self.value_head is not None and not any(k.startswith("value_head.") for k in state_dict):
            state_dict = {**state_dict, **{f"value_head.{k}": v for k, v in self.value_head.state_dict().items()}}
        return state_dict

    canonical_state_key = staticmethod(adapters.unwrapped_key)

    def load_trained_only(self, weights: Mapping[str, torch.Tensor], where: str, strict: bool = True) -> None:
        """As :meth:`BaseModel.load_trained_only`; the LoRA adapters of a run loaded into a model
        without LoRA (a later stage's ``finetuned``) are merged into its weights."""
        with adapters.merged_on_load(self, weights):
            super().load_trained_only(weights, where, strict)

    def load_base(self, record: Mapping[str, Any]) -> None:
        """As :meth:`BaseModel.load_base`, except under LoRA: base files name the weights without
        peft's wrapping, so a wrapped model must hold its base already (the load checks it)."""
        if not self.has_lora:
            super().load_base(record)

    def build_hf_config(self, hf_config: dict[str, Any]) -> Any:
        """The transformers config from ``hf_config`` with token ids and the vocabulary size taken
        from the tokenizer where not given."""
        config_cls = _resolve_class(self.HF_CONFIG_CLASS)
        tok = self.tokenizer
        text = dict(hf_config.pop("text_config", {}) or {})
        text.setdefault("vocab_size", len(tok))
        for key, value in (("pad_token_id", tok.pad_token_id), ("eos_token_id", tok.eos_token_id),
                           ("bos_token_id", tok.bos_token_id)):
            text.setdefault(key, value)
        if text["vocab_size"] < len(tok):
            raise ConfigError([f"model.hf_config.text_config.vocab_size: {text['vocab_size']} is smaller than the "
                               f"tokenizer ({len(tok)} tokens); remove it or set it to at least {len(tok)}"])
        image_token_id = getattr(self.processor, "image_token_id", None)
        fields = set(getattr(config_cls, "__dataclass_fields__", {})) | set(config_cls.__init__.__code__.co_varnames)
        for key in ("image_token_id", "image_token_index"):
            if key in fields and image_token_id is not None:
                hf_config.setdefault(key, image_token_id)
        tok_ids = {"vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>",
                   "video_token_id": "<|video_pad|>"}
        for key, token in tok_ids.items():
            if key in fields and token in tok.get_vocab():
                hf_config.setdefault(key, tok.convert_tokens_to_ids(token))
        return config_cls(text_config=text, **hf_config)

    # -- modules --------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def inner(self) -> nn.Module:
        """The transformers model (under the peft wrapper when LoRA is on)."""
        model = self.hf_model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _first(self, names: Sequence[str], what: str) -> nn.Module:
        for name in names:
            module = _get_module(self.inner, name)
            if module is not None:
                return module
        raise AttributeError(f"{type(self).__name__}: no {what} at any of {list(names)}; set the names on the class")

    @property
    def vision_tower(self) -> nn.Module:
        """The image encoder."""
        return self._first(self.VISION_TOWER_NAMES, "vision tower")

    @property
    def projector(self) -> nn.Module:
        """The module that maps image features into the language model's embedding space."""
        return self._first(self.PROJECTOR_NAMES, "projector")

    @property
    def language_model(self) -> nn.Module:
        """The decoder (without the LM head)."""
        return self._first(self.LANGUAGE_MODEL_NAMES, "language model")

    @property
    def lm_head(self) -> nn.Module:
        head = getattr(self.inner, "get_output_embeddings")()
        assert isinstance(head, nn.Module)
        return head

    def freeze_vision_tower(self) -> None:
        """No gradients into the vision tower; the projector still trains, also where it sits
        inside the tower (Qwen2-VL's ``visual.merger``)."""
        keep = {id(p) for p in self.projector.parameters()}
        for p in self.vision_tower.parameters():
            if id(p) not in keep:
                p.requires_grad_(False)

    @property
    def default_lora_target(self) -> list[str]:
        """Full names of the language model's linear layers (the vision tower, the projector and
        the LM head excluded): what ``lora.target_modules: auto`` adapts."""
        lm = self.language_model
        prefix = next(n for n, m in self.inner.named_modules() if m is lm)
        return sorted(f"{prefix}.{n}" for n, m in lm.named_modules() if isinstance(m, nn.Linear))

    @property
    def has_lora(self) -> bool:
        return self.lora_config is not None

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """The base weights alone inside the block (LoRA off); a no-op without LoRA."""
        if not self.has_lora:
            yield
            return
        with self.hf_model.disable_adapter():
            yield

    # -- prompt ---------------------------------------------------------------------------------
    @property
    def chat_template(self) -> str:
        template = getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)
        if not template:
            raise ValueError(f"the processor at {self.processor_source} has no chat template; add chat_template.jinja")
        return template

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        """The chat template applied to ``messages`` (content lists with ``{"type": "image"}``)."""
        if not messages:
            return ""
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def format_multimodal_prompt(self, conversation: Sequence[Mapping[str, Any]], num_images: int) -> list[conv.Turn]:
        """The conversation normalised to ``{"role", "content"}`` turns, with placeholders put in
        front of the first user turn when it has none, and checked against ``num_images``."""
        turns = conv.insert_placeholders(conv.normalize(conversation), num_images)
        conv.validate(turns, num_images)
        return turns

    @staticmethod
    def remove_image_placeholder(text: str) -> str:
        return conv.remove_placeholders(text)

    @staticmethod
    def is_multimodal_prompt_valid(conversation: Sequence[Mapping[str, Any]], num_images: int) -> bool:
        try:
            conv.validate(conv.normalize(conversation), num_images)
        except conv.ConversationError:
            return False
        return True

    # -- inputs ---------------------------------------------------------------------------------
    @property
    def multimodal_keywords(self) -> tuple[str, ...]:
        """Batch keys that carry images (``pixel_values``, ``image_grid_thw``, ``image_sizes``, ...)."""
        return tuple(getattr(self.processor.image_processor, "model_input_names", ("pixel_values",)))

    @property
    def non_generate_params(self) -> tuple[str, ...]:
        return self.NON_GENERATE_PARAMS

    @property
    def processing_keywords(self) -> tuple[str, ...]:
        return self.PROCESSING_KEYWORDS

    @property
    def is_embeds_input(self) -> bool:
        """Whether ``generate`` can start from :meth:`inputs_embeds` (``from_embeds=True``)."""
        return not self.NO_EMBEDS_GENERATION

    def inputs_embeds(self, samples: Mapping[str, Any], phase: str = "generate") -> torch.Tensor:
        """[B, L, D]: the text embeddings of the batch with the image features in place of the
        image tokens, built by the transformers model (see :mod:`lavis.models.vlm.embeds`)."""
        return embeds.multimodal_inputs_embeds(self, self.batch_inputs(samples, phase))

    def _process(self, text: str, images: list[Any]) -> dict[str, torch.Tensor]:
        kwargs: dict[str, Any] = {"return_tensors": "pt", "add_special_tokens": False}
        if images:
            kwargs["images"] = images
            if all(isinstance(im, torch.Tensor) and im.is_floating_point() for im in images):
                kwargs.update(do_rescale=False, do_normalize=False)  # already normalised pixels
        out = dict(self.processor(text=[text], **kwargs))
        out.pop("labels", None)  # some processors (PaliGemma) make labels; process_batch_conv makes its own
        return out

    def process_batch_conv(
        self, conversations: Sequence[Sequence[Mapping[str, Any]]], images: Sequence[Sequence[Any]] | None = None,
        phase: str = "train",
    ) -> dict[str, torch.Tensor]:
        """Tokenise a batch of conversations with their images.

        Args:
            conversations: one list of turns per sample (``<image>`` marks each image).
            images: one list of images (PIL, or float tensors [3, H, W] that are already
                normalised) per sample, in placeholder order.
            phase: ``"train"``: the whole conversation, ``labels`` on assistant tokens (else
                -100), right padding. ``"generate"``: up to the last user turn (a final assistant
                turn is dropped) plus the generation prompt, left padding, no labels.

        Returns:
            ``input_ids``, ``attention_mask`` [B, L] (and ``labels`` for training, other per-token
            keys the processor makes), plus the multimodal keys of every image in batch order.
        """
        if phase not in ("train", "generate"):
            raise ValueError(f"phase must be 'train' or 'generate', got {phase!r}")
        images = images if images is not None else [[] for _ in conversations]
        if len(images) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(images)} image lists")
        generation = phase == "generate"
        rows: dict[str, list[torch.Tensor]] = {}
        media: dict[str, list[torch.Tensor]] = {}
        image_token = getattr(self.processor, "image_token", conv.IMAGE_PLACEHOLDER)
        for b, (conversation, imgs) in enumerate(zip(conversations, images)):
            imgs = list(imgs or [])
            turns = self.format_multimodal_prompt(conversation, len(imgs))
            if generation and turns[-1]["role"] == "assistant":
                turns = turns[:-1]
            pieces: dict[str, list[torch.Tensor]] = {}
            left = list(imgs)
            for text, trained in conv.segments(turns, self.render, generation):
                n = text.count(image_token)
                seg_images, left = left[:n], left[n:]
                out = self._process(text, seg_images)
                ids = out.pop("input_ids")[0]
                pieces.setdefault("input_ids", []).append(ids)
                pieces.setdefault("labels", []).append(ids.clone() if trained else torch.full_like(ids, -100))
                for key, value in out.items():
                    if key in TOKEN_KEYS:
                        pieces.setdefault(key, []).append(value[0])
                    else:
                        media.setdefault(key, []).append(value)
            row = {k: torch.cat(v) for k, v in pieces.items()}
            if row["input_ids"].shape[0] > self.max_length:
                if generation or (row["labels"][: self.max_length] == -100).all():
                    raise ValueError(f"conversation {b} is {row['input_ids'].shape[0]} tokens long with its images, "
                                     f"more than model.max_length={self.max_length}; raise max_length or shorten it")
                row = {k: v[: self.max_length] for k, v in row.items()}
            for key, value in row.items():
                rows.setdefault(key, []).append(value)
        side = "left" if generation else "right"
        pad_id = self.tokenizer.pad_token_id
        batch = {key: conv.pad(v, pad_id if key == "input_ids" else -100 if key == "labels" else 0, side)
                 for key, v in rows.items()}
        if generation:
            batch.pop("labels")
        batch.update({key: torch.cat(v) for key, v in media.items()})
        return batch

    def samples_to_conversations(self, samples: Mapping[str, Any]) -> tuple[list, list]:
        """``(conversations, images)`` from ``conversations``/``images`` keys, or from caption-style
        ``image`` (+ ``text_input`` as the reply) with :attr:`prompt` as the user turn."""
        if "conversations" in samples:
            return list(samples["conversations"]), list(samples.get("images") or [[] for _ in samples["conversations"]])
        if "image" in samples:
            images = samples["image"]
            images = list(images.unbind(0)) if isinstance(images, torch.Tensor) else list(images)
            replies = samples.get("text_input")
            convs = []
            for i in range(len(images)):
                turns = [{"role": "user", "content": f"{conv.IMAGE_PLACEHOLDER}\n{self.prompt}"}]
                if replies is not None:
                    turns.append({"role": "assistant", "content": replies[i]})
                convs.append(turns)
            return convs, [[im] for im in images]
        raise KeyError(f"samples need 'input_ids', 'conversations' (+ 'images') or 'image' (+ 'text_input'); "
                       f"got keys {sorted(samples)}")

    def batch_inputs(self, samples: Mapping[str, Any], phase: str) -> dict[str, torch.Tensor]:
        """Model inputs on the model's device: a batch that is already tokenised passes through."""
        if "input_ids" in samples:
            keys = set(TOKEN_KEYS) | set(self.multimodal_keywords) | {"image_grid_thw", "image_sizes", "pixel_values"}
            batch = {k: v for k, v in samples.items() if k in keys and isinstance(v, torch.Tensor)}
        else:
            batch = self.process_batch_conv(*self.samples_to_conversations(samples), phase=phase)
        device = self.device
        return {k: v.to(device) for k, v in batch.items()}

    # -- training -------------------------------------------------------------------------------
    def forward(self, samples: Mapping[str, Any]) -> ModelOutput:
        """Cross entropy of the reply tokens (``labels`` != -100), averaged over them.

        With ``samples["output_token_logps"]`` the output's extras hold ``token_logps`` [B, L-1]
        (log-probability of each next token) and ``loss_mask`` [B, L-1] (True on reply tokens), which
        preference and RL tasks sum into sequence log-probabilities. With ``samples["output_values"]``
        (a model built with ``value_head``) they hold ``values`` [B, L]: the value head on the last
        hidden state of each input token, from the same forward pass.
        """
        batch = self.batch_inputs(samples, "train")
        labels = batch.pop("labels", None)
        if labels is None:
            raise KeyError("forward needs labels: give conversations with an assistant reply, or text_input")
        want_values = bool(samples.get("output_values"))
        if want_values and self.value_head is None:
            raise ValueError(f"output_values needs a value head: build the model with value_head=True "
                             f"(model.value_head: true in the config of {type(self).__name__})")
        out = self.hf_model(**batch, use_cache=False, output_hidden_states=want_values)
        logits = out.logits[:, :-1].float()
        target = labels[:, 1:]
        mask = target != -100
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
        extras: dict[str, Any] = {}
        if samples.get("output_token_logps"):
            logps = torch.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            extras = {"token_logps": logps * mask, "loss_mask": mask}
        if want_values:
            assert self.value_head is not None
            hidden = out.hidden_states[-1]
            extras["values"] = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()
            extras.setdefault("loss_mask", mask)
        return ModelOutput(loss=loss, extras=extras)

    # -- likelihoods ----------------------------------------------------------------------------
    @torch.no_grad()
    def reply_loglikelihoods(
        self, conversations: Sequence[Sequence[Mapping[str, Any]]], images: Sequence[Sequence[Any]] | None,
        replies: Sequence[str],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """How likely the model finds each reply as the assistant's answer to its conversation.

        Each conversation ends with a user turn; ``replies[i]`` is appended as the assistant turn
        and its tokens (as the chat template renders them, end-of-turn token included) are scored.

        Returns:
            ``(logps, greedy)``, both [N]: the sum of the reply tokens' log-probabilities, and
            whether greedy decoding would produce exactly those tokens.
        """
        convs = [[*c, {"role": "assistant", "content": r}] for c, r in zip(conversations, replies, strict=True)]
        batch = self.batch_inputs({"conversations": convs, "images": list(images) if images is not None else None},
                                  "train")
        labels = batch.pop("labels")
        was_training = self.training
        self.eval()
        try:
            logits = self.hf_model(**batch, use_cache=False).logits[:, :-1].float()
        finally:
            self.train(was_training)
        target = labels[:, 1:]
        mask = target != -100
        logps = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        greedy = (logits.argmax(-1) == target) | ~mask
        return (logps * mask).sum(-1).cpu(), greedy.all(-1).cpu()

    def option_loglikelihoods(
        self, samples: Mapping[str, Any], options: Sequence[Sequence[str]], batch_size: int | None = None,
    ) -> list[torch.Tensor]:
        """Per sample, a tensor [K_i] of the log-likelihood of each of its ``K_i`` options as the
        reply (:meth:`reply_loglikelihoods`); the highest is the model's choice.

        ``samples``: ``conversations`` (each ending with a user turn) and ``images``, as for
        :meth:`generate`. The options of all samples are scored together, ``batch_size``
        conversations at a time (all at once by default).
        """
        convs, imgs = self.samples_to_conversations(samples)
        flat = [(i, opt) for i, opts in enumerate(options) for opt in opts]
        if len(options) != len(convs):
            raise ValueError(f"{len(convs)} samples but {len(options)} option lists")
        step = batch_size or max(len(flat), 1)
        scores: list[torch.Tensor] = []
        for start in range(0, len(flat), step):
            chunk = flat[start:start + step]
            logps, _ = self.reply_loglikelihoods([convs[i] for i, _ in chunk], [imgs[i] for i, _ in chunk],
                                                 [opt for _, opt in chunk])
            scores.append(logps)
        every = torch.cat(scores) if scores else torch.zeros(0)
        return list(every.split([len(o) for o in options]))

    # -- generation -----------------------------------------------------------------------------
    @property
    def media_token_ids(self) -> list[int]:
        """Ids of the tokens that stand for images and videos (placeholders and their delimiters),
        from the processor and the transformers config; generated text must not contain them."""
        ids = {getattr(self.processor, "image_token_id", None), getattr(self.processor, "video_token_id", None)}
        config = self.inner.config
        for key in ("image_token_id", "image_token_index", "video_token_id", "vision_start_token_id",
                    "vision_end_token_id"):
            ids.add(getattr(config, key, None))
        return sorted(i for i in ids if isinstance(i, int) and i != self.tokenizer.eos_token_id)

    @property
    def default_generation_kwargs(self) -> dict[str, Any]:
        """Greedy decoding of up to 32 new tokens ending at the tokenizer's end-of-turn token, with
        image and video tokens suppressed (:attr:`media_token_ids`), and the model type's
        ``generation`` block on top."""
        tok = self.tokenizer
        return {"max_new_tokens": 32, "do_sample": False, "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id, "suppress_tokens": self.media_token_ids, **self._generation}

    def _generation_kwargs(self, kw: dict[str, Any]) -> dict[str, Any]:
        kwargs = self.default_generation_kwargs
        # LAVIS names: max_length/min_length count new tokens here (the prompt is a chat template)
        if "max_length" in kw:
            kwargs["max_new_tokens"] = kw.pop("max_length")
        if "min_length" in kw:
            kwargs["min_new_tokens"] = kw.pop("min_length")
        if kw.pop("use_nucleus_sampling", False):
            kwargs["do_sample"] = True
        kwargs.update(kw)
        if not kwargs.get("do_sample"):
            for key in ("top_p", "top_k", "temperature"):
                kwargs.pop(key, None)
        return kwargs

    @torch.no_grad()
    def generate_ids(
        self, samples: Mapping[str, Any], **kw: Any
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """``(prompt batch, completion ids, completion mask)``, both [B * num_return_sequences, T]:
        completions end at the end-of-turn token (included; the mask is True up to it) and are
        padded with ``pad_token_id`` after it. ``from_embeds=True`` generates from
        :meth:`inputs_embeds` instead of the pixels (where :attr:`is_embeds_input`), or from the
        ``inputs_embeds`` [B, L, D] given (e.g. those of :meth:`inputs_embeds`, edited)."""
        given = kw.pop("inputs_embeds", None)
        from_embeds = bool(kw.pop("from_embeds", False)) or given is not None
        batch = self.batch_inputs(samples, "generate")
        kwargs = self._generation_kwargs(dict(kw))
        was_training = self.training
        self.eval()
        try:
            inputs = {k: v for k, v in batch.items() if k not in self.non_generate_params}
            if from_embeds:
                inputs = embeds.generate_inputs(self, inputs, given)
            out = self.hf_model.generate(**inputs, **kwargs)
        finally:
            self.train(was_training)
        completion = out[:, batch["input_ids"].shape[1]:]
        eos, pad_id = kwargs["eos_token_id"], kwargs["pad_token_id"]
        is_eos = (completion == eos).int()
        after_eos = (is_eos.cumsum(1) - is_eos) > 0
        return batch, completion.masked_fill(after_eos, pad_id), ~after_eos

    def generate(self, samples: Mapping[str, Any], **kwargs: Any) -> list[str]:
        """One reply per sample (``num_return_sequences`` per sample when given), special tokens removed.

        ``samples`` as for :meth:`forward`, without the replies. Keyword arguments go to
        transformers' ``generate`` over :attr:`default_generation_kwargs`; ``max_length`` and
        ``min_length`` count new tokens, ``use_nucleus_sampling`` turns sampling on.
        """
        _, completion, _ = self.generate_ids(samples, **kwargs)
        return [t.strip() for t in self.tokenizer.batch_decode(completion, skip_special_tokens=True)]
