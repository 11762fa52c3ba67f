"""Loss masking for answer-only training, with the standard library only.

A training example is the chat-template rendering of
    [system?] user: <image> question   assistant: answer<|im_end|>
and the loss must cover only the answer (and the end-of-turn token that teaches the model to stop):
every token up to and including the last assistant header (`<|im_start|>assistant\\n`) is masked,
and so is padding.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

IGNORE_INDEX = -100


def find_last(haystack: Sequence[int], needle: Sequence[int]) -> int:
    """Start of the last occurrence of `needle` in `haystack`, or -1."""
    n = len(needle)
    if n == 0 or n > len(haystack):
        return -1
    for start in range(len(haystack) - n, -1, -1):
        if list(haystack[start : start + n]) == list(needle):
            return start
    return -1


def answer_labels(
    input_ids: Sequence[int],
    assistant_header: Sequence[int],
    attention_mask: Optional[Sequence[int]] = None,
    ignore_index: int = IGNORE_INDEX,
) -> List[int]:
    """Labels for one example: ids after the last assistant header, ignore_index everywhere else.

    Raises ValueError when the header is missing or nothing follows it (the example was cut off
    by max_length before its answer): such an example has nothing to learn from.
    """
    start = find_last(input_ids, assistant_header)
    if start < 0:
        raise ValueError("the assistant header is not in the example")
    first_answer = start + len(assistant_header)
    labels = [ignore_index] * len(input_ids)
    for i in range(first_answer, len(input_ids)):
        if attention_mask is None or attention_mask[i]:
            labels[i] = int(input_ids[i])
    if all(label == ignore_index for label in labels):
        raise ValueError("no answer tokens after the assistant header")
    return labels


def assistant_header_ids(tokenize, template_prompt_with_header: str, template_prompt_without_header: str) -> List[int]:
    """The token ids of the assistant header, found as the difference between two renderings of
    the same conversation with and without the generation prompt (so it follows the checkpoint's
    own template rather than a hard-coded string). `tokenize(text) -> list of ids`."""
    with_header = list(tokenize(template_prompt_with_header))
    without = list(tokenize(template_prompt_without_header))
    if with_header[: len(without)] != without or len(with_header) == len(without):
        raise ValueError("cannot find the assistant header: the template's generation prompt is not a suffix")
    return with_header[len(without) :]


def expand_image_tokens(input_ids: Sequence[int], image_token_id: int, count: int) -> List[int]:
    """Replaces each image placeholder with `count` copies, one per image feature row. Done here
    rather than by the processor: processors of some transformers versions count one token too
    many for SigLIP towers, which have no CLS feature."""
    if count <= 0:
        raise ValueError("count must be positive")
    out: List[int] = []
    for token in input_ids:
        if token == image_token_id:
            out.extend([image_token_id] * count)
        else:
            out.append(int(token))
    return out


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int) -> "tuple[List[List[int]], List[List[int]]]":
    """Right-padded ids and the attention mask (1 = real token)."""
    width = max((len(s) for s in sequences), default=0)
    ids = [list(s) + [pad_id] * (width - len(s)) for s in sequences]
    mask = [[1] * len(s) + [0] * (width - len(s)) for s in sequences]
    return ids, mask


def image_feature_count(image_size: int, patch_size: int, select_strategy: str) -> int:
    """Image feature rows of a SigLIP/CLIP tower: one per patch; "default" drops the first row."""
    count = (image_size // patch_size) ** 2
    return count - 1 if select_strategy == "default" else count
