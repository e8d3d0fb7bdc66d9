"""Every bound the reader puts on a value read from a file (spec section 14, "Limits and hostile input").

The reader checks these before a value costs anything (a regex run, an allocation, a decode, a
download, a line in a card or on a terminal). Writers that stay inside them are read everywhere.
"""

# container (spec 1.2)
MAX_HEADER_BYTES = 100_000_000          # the JSON header, manifest included
MAX_TENSORS = 100_000                   # header entries
MAX_TENSOR_NAME_CHARS = 1_024
MAX_TENSOR_RANK = 8                     # dimensions of one tensor
MAX_DIMENSION = 2**31 - 1               # one dimension of a shape the manifest declares (lora.shapes); a tensor's
                                        # dimension in the header only by MAX_TENSOR_ELEMENTS: images.data is
                                        # U8 [total bytes], 4 GB of PNGs for ImageNet-1K at IPC 50
MAX_TENSOR_ELEMENTS = 2**59             # product of a shape's dimensions, a 0 counted as 1: torch's 64-bit
                                        # strides and sizes hold it (x 8 bytes); bounds a zero-element tensor,
                                        # any other is bounded by the file's size
MAX_JSON_INTEGER_DIGITS = 20            # any integer literal in the header: 64-bit at most
MAX_JSON_CONTAINERS = 1_000_000         # '[' and '{' characters in a JSON text (header, manifest), counted before
MAX_JSON_SEPARATORS = 4_000_000         # it is parsed, ',' characters, and ':' characters (an object's members,
MAX_JSON_MEMBERS = 1_000_000            # each ~220 bytes parsed, 4x a list item): parsed JSON costs up to ~60x
                                        # its text (a 100 MB header of "[[],[],..." is 2 GB of lists; 43 MB of
                                        # 4-character keys, 0.9 GB of dicts); these bound it to a few hundred MB.
                                        # A 100,000-tensor header holds about 300,000, 700,000 and 500,000

# manifest structure (checked before the JSON Schema)
MAX_VERSION_CHARS = 32                  # format_version, checked before its digits are read
MAX_FEATURES = 16                       # names in requires (format 2.0)
MAX_FEATURE_CHARS = 40                  # characters of each
MAX_JSON_DEPTH = 32                     # nesting of objects and arrays in the manifest
MAX_STRING_CHARS = 65_536               # any string in the manifest
MAX_CLASSES = 100_000
MAX_CLASS_NAME_CHARS = 512
MAX_TEMPLATES = 1_000
MAX_TEMPLATE_CHARS = 512
MAX_IMAGE_SIDE = 8_192                  # images.height/width, base.image_size, recipe sizes, augment.output_size,
                                        # a safetensors teacher's input size
MAX_PATCH_SHUFFLE = 64                  # recipe.augment.patch_shuffle
MAX_MIX_ALPHA = 1e6                     # recipe.augment.cutmix_alpha, mixup_alpha: Beta(1e6, 1e6) is 0.5 to 3
                                        # decimals already, and numpy's Beta draws 0 from about 1e308
MAX_DECODED_BYTES_PER_FILE_BYTE = 1_024  # N x C x H x W <= this x file size (deflate's own limit is ~1032:1)
                                         # and what augmenting every image into the student's views holds
MIN_VIEW_BYTES = 2**28                   # (augment.view_bytes, 12 bytes a view pixel and more), or this much:
                                         # ten 32-px images viewed at 224 px hold 18 MB, whatever the file's size
# Pillow's scratch while it decodes one image, per pixel, whatever the channels declared (measured peaks,
# Pillow 13: a WebP through libwebp's two RGBA canvases and two copies, 16; a four-component JPEG, 10; a
# 16-bit or RGBA PNG, 6): one image's scratch <= the decoded-bytes bound, and the images decoded at once
# together <= MAX_DECODE_SCRATCH_BYTES (one image alone may need more, within the file's bound)
DECODE_SCRATCH_BYTES_PER_PIXEL = {"png": 8, "jpeg": 12, "webp": 16}
MAX_DECODE_SCRATCH_BYTES = 256 * 2**20
MAX_JPEG_SCANS = 64                     # SOS markers in one JPEG blob (libjpeg's progressive mode writes 10),
                                        # counted as FF DA pairs anywhere in it (metadata's too)
MAX_PNG_TEXT_BYTES = 2**20              # what one PNG blob's text chunks may hold once Pillow has read them, bounded
                                        # from their headers (tEXt as stored; zTXt and iTXt at deflate's ~1032:1):
                                        # Pillow inflates them before the image's size is read, up to 64 MiB a blob
MAX_PROMPTS = 1_000_000                 # class_names x head.templates: the text tower's forwards for a head
                                        # (ImageNet-1K with the 80-template ensemble: 80,000)
MAX_TOKENIZER_WORK = 2**28              # those prompts' BPE work: the sum over their runs (manifest.tokenizer_work)
                                        # of the run's UTF-8 bytes squared (ImageNet-1K x 80 templates: ~10^7;
                                        # at open_clip's 96 ns a unit, bench/tokenizer_bound.py: about 26 s
                                        # at the bound, 7 h for 10^6 prompts of one 512-letter word each)
MAX_RANK = 4_096                        # lora.r, rank_pattern values, head.lora.r
MAX_LORA_ALPHA = 1e6                    # lora_alpha, alpha_pattern values, head.lora.lora_alpha
MAX_TARGETS = 1_000                     # entries of a target_modules list, rank_pattern, alpha_pattern
MAX_MODULE_NAME_CHARS = 512             # a module name in a target_modules list
MAX_PATTERN_CHARS = 512                 # a target pattern (lora.target_modules string, pattern keys)
MAX_PATTERN_NESTING = 16                # groups inside groups in a target pattern
MAX_TARGET_MATCH_WORK = 4_000_000       # pattern (or target list) characters x module path characters, summed
MAX_GROUP_SIZE = 65_536                 # lora.group_size, head.lora.group_size (int8/int4 deltas, format 1.1)
MAX_DELTA_SCALE = 1e4                   # each fp16 scale of an int8/int4 delta (dequantised |values| <= 1.27e6)
LOGIT_SCALE_RANGE = (1e-4, 1e4)         # head.logit_scale (and an --init-adapter folder's head logit_scale)
MEAN_RANGE = (-10.0, 10.0)              # each of base.mean (and of a safetensors teacher's hello.mean)
STD_RANGE = (1e-3, 1e3)                 # each of base.std (and of a safetensors teacher's hello.std)
TEMPERATURE_RANGE = (1e-2, 1e3)         # recipe.temperature (the field's KD uses 1 to 20; 1e-300 makes the KL NaN)
MAX_LR = 10.0                           # recipe.lr
MAX_WEIGHT_DECAY = 10.0                 # recipe.weight_decay
MAX_BETA = 1e3                          # recipe.beta
MAX_EPOCHS = 1_000_000                  # recipe.epochs
MAX_BATCH_SIZE = 1_000_000              # recipe.batch_size
# the student recipe's bounds in one table: the reader holds a bundle's recipe to them, hello eval its overrides
RECIPE_INTEGERS = {"epochs": (1, MAX_EPOCHS), "batch_size": (1, MAX_BATCH_SIZE)}
RECIPE_NUMBERS = {"temperature": TEMPERATURE_RANGE, "lr": (0, MAX_LR), "weight_decay": (0, MAX_WEIGHT_DECAY),
                  "beta": (0, MAX_BETA)}
RECIPE_ABOVE_LOW = frozenset({"lr"})   # of those, above the low bound (spec 4: recipe.lr > 0, the schema's to check)

# base configs: the only keys a bundle's base.config may use; anything else (text_cfg.hf_model_name,
# vision_cfg.timm_model_name, a tokenizer name, ...) makes open_clip fetch or build what the file
# names, so it needs the user's explicit opt-in (allow_remote_base=True / --allow-remote-base).
BASE_CONFIG_KEYS = frozenset({"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale",
                              "init_logit_bias", "nonscalar_logit_scale", "custom_text"})
VISION_CONFIG_KEYS = frozenset({
    "act_kwargs", "attentional_pool", "attn_pooler_heads", "attn_pooler_queries", "block_type", "final_ln_after_pool",
    "head_width", "image_size", "layers", "ls_init_value", "mlp_ratio", "no_ln_pre", "norm_kwargs", "output_tokens",
    "patch_dropout", "patch_size", "pool_type", "pos_embed_type", "qk_norm", "scale_attn", "scale_attn_inner",
    "scale_fc", "scale_heads", "scaled_cosine_attn", "width"})
TEXT_CONFIG_KEYS = frozenset({
    "act_kwargs", "block_type", "context_length", "embed_cls", "eos_id", "final_ln_after_pool", "heads", "layers",
    "ls_init_value", "mlp_ratio", "no_causal_mask", "norm_kwargs", "output_tokens", "pad_id", "pool_type", "proj_bias",
    "proj_type", "qk_norm", "scale_attn", "scale_attn_inner", "scale_fc", "scale_heads", "scaled_cosine_attn",
    "vocab_size", "width"})
NORM_EPS_RANGE = (1e-12, 1.0)           # norm_kwargs.eps, the only norm_kwargs key and
GELU_APPROXIMATIONS = ("none", "tanh")  # act_kwargs.approximate, the only act_kwargs key, of a tower in a custom
                                        # config: open_clip passes them to every layer (a "device" would leave the meta device)
TOKENIZER_VOCAB = 49_408                # open_clip's own tokenizer, the only one a custom config gets: its
                                        # text_cfg.vocab_size may not be smaller (the embedding would be indexed past its end)
MAX_BASE_PARAMETERS = 2_000_000_000     # a custom base.config may not describe a larger model
MAX_BASE_LAYERS = 256                   # blocks in a custom base.config, both towers (bounds building it, even on meta)
MAX_CONTEXT_LENGTH = 1024               # text_cfg.context_length of a custom base.config (open_clip's own: 16 to 77);
                                        # the text tower allocates a context x context mask when built
MAX_VISION_PIXELS = 2**20               # a custom image tower's input, H x W: every view is resized to it (open_clip's
                                        # largest config, SigLIP at 512 px, has 262,144; an 8,192-px tower with
                                        # 128-px patches is a 1 MB file whose views cost 800 MB each)
MAX_VISION_TOKENS = 4_096               # a custom ViT tower's attention tokens, (H / patch) x (W / patch): every
                                        # batch pays their square (ViT-L/14 at 336 px has 576; 4,096 is a 64 x 64
                                        # grid); a ModifiedResNet's attention pool sees (H / 32) x (W / 32) <= 1,024
# a custom transformer tower's multiply-adds for one sequence (a view, a prompt) per parameter of its blocks,
# tokens x (1 + tokens / (6 width)): what it costs beyond what its weights are (ViT-B/16's view 205, its
# prompt 79; a width-8 image tower over 4,096 tokens, 3.5e5: a 1.8 MB file asked seconds per view)
MAX_FORWARD_WORK_PER_PARAMETER = 2**14
# ... and for the text head, every class x template prompt (ImageNet-1K's 80,000 prompts through ViT-B/16's text
# tower: 6.3e6; 10^6 prompts at context 1,024 through a width-16 tower, 1.2e10: days of CPU from a 3 MB file)
MAX_HEAD_WORK_PER_PARAMETER = 2**27
MAX_SINCOS_TABLE_VALUES = 2**24         # (grid positions + 1) x width of a custom sin_cos_2d vision tower: open_clip
                                        # computes that table in host memory, even on the meta device

# a peft adapter folder given to hello-build --init-adapter: its adapter_config.json
MAX_ADAPTER_CONFIG_BYTES = 1_000_000
MAX_PEFT_VERSION_CHARS = 64             # and its peft_version, bounded before it is parsed
# hello-build --base-config FILE: an open_clip model config (open_clip's own are under 2 KB)
MAX_BASE_CONFIG_BYTES = 1_000_000

# a repo's README.md that hello pull saves beside the bundle (a larger one is skipped; hello's own cards
# name at most 1,000 classes of at most 512 characters)
MAX_CARD_BYTES = 2**21

# a hello eval results file given to hello push --eval (its values are written into the card)
MAX_EVAL_RESULTS_BYTES = 1_000_000
MAX_EVAL_ENTRIES = 1_000                # results in that file: a card's table rows
MAX_EVAL_COLUMNS = 64                  # distinct scalar fields over its entries: the table's columns (hello eval writes 17)

# an image of an ImageFolder the builder or hello eval reads (hello-build DATA, --init-images, hello eval
# --val / --real): only these Pillow formats are opened (EPS would run Ghostscript on the file), a JPEG of
# at most MAX_JPEG_SCANS scans, and at most this many pixels decoded (after a JPEG's DCT-scale reduction):
# the larger of the floor and SOURCE_PIXELS_PER_FILE_BYTE per byte of the file, never above
# MAX_SOURCE_PIXELS. Decoding costs up to 20 bytes a pixel (a transparent palette PNG composited on white):
# a 22 KB PNG declaring 13,370 x 13,370 cost 3.2 GB. A 6,000 x 5,000 photo as a 40 MB PNG fits, and a
# 1-bit 600-dpi page scan (24M at 8 pixels a byte, compressed 10-20x); a 4K screenshot (8.3M) fits the floor.
DATA_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
# the file names an image folder's scan lists (hidden files aside); each is then opened as one of the formats above
DATA_IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
                                   ".pbm", ".jfif"})
MIN_SOURCE_PIXELS = 2**24
SOURCE_PIXELS_PER_FILE_BYTE = 256
MAX_SOURCE_PIXELS = 2**26

# a class-names file given to hello-build --class-names (read whole): MAX_CLASSES names and folders of
# MAX_CLASS_NAME_CHARS 4-byte characters each fit
MAX_CLASS_NAMES_FILE_BYTES = 2**29
MAX_CLASS_NAMES_FILE_LINES = 2 * MAX_CLASSES   # a name (or folder and name) per class, a blank line between

# a batch's rows x the base's pixels: what the projector resizes one batch of views to (hello eval,
# hello requantize's calibration)
MAX_BATCH_BASE_PIXELS = 2**31
# input pixels a labeller runs at once (Projector.label through the base; a teacher in eval mode, hello
# eval's teacher and stored regimes): a batch above is labelled in chunks (the same labels), so a file's
# batch size and image count cannot make one pass hold more (ImageNet's 256 views at 224 px are 12.8M,
# one chunk)
LABEL_CHUNK_PIXELS = 2**24
# ... and a chunk of a teacher whose activations for one view are known (a zoo teacher's, sized on the meta
# device: hello_build.zoo.activation_bytes) holds at most this many bytes of them, one view at least, so a
# teacher whose views are large labels a few at a time (ResNet-18 at 224 px: 30 MB a view, 35 views a chunk;
# ConvNet-3 at 32 px: 2.2 MB, 480; at 512 px, 573 MB, one: 16 views peaked at 4.6 GB in one pass, 0.66 GB so)
LABEL_CHUNK_ACTIVATION_BYTES = 2**30

# the local head cache (hello_format.head_cache): a larger entry is ignored, never read (nor written);
# the entries together at most HEAD_CACHE_BYTES (storing one evicts the least recently used beyond it)
MAX_HEAD_CACHE_ENTRY_BYTES = 2**30
HEAD_CACHE_BYTES = 2**32
# a text head [classes, embed_dim] the base computes (not stored): at most this many values (512 MiB in
# fp32, so that the cache can hold it; 100,000 classes x 1,280 fit) and at most one per byte of the file
# (ImageNet-1K x 1,024 is 1M values; a class costs the file at least one image)
MAX_HEAD_VALUES = 2**27
