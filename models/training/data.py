"""Training data for the LoRA trainer: styled Q/A samples and their photos.

Samples are `{question, ans, url}` (the original work's JSON arrays, or the JSONL that
`vistyle data make` writes, where `answer` is also accepted). Photos are downloaded once into an
on-disk cache keyed by the URL's hash; a photo that cannot be fetched or decoded is skipped (and
remembered, so a re-run does not wait on it again unless --retry-failed is given).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Sample:
    question: str
    answer: str
    url: str


def read_samples(path: str) -> List[Sample]:
    with open(path, "r", encoding="utf-8-sig") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    samples = []
    for index, row in enumerate(rows, 1):
        answer = row.get("ans", row.get("answer"))
        question, url = row.get("question"), row.get("url")
        if not all(isinstance(v, str) and v.strip() for v in (question, answer, url)):
            raise ValueError(f"{path}: sample {index} needs question, ans and url text")
        samples.append(Sample(question.strip(), answer.strip(), url.strip()))
    return samples


def split_by_image(samples: Sequence[Sample], eval_fraction: float, seed: int) -> Tuple[List[Sample], List[Sample]]:
    """Held-out split by photo, so the eval loss is measured on photos never trained on."""
    urls = sorted({s.url for s in samples})
    random.Random(seed).shuffle(urls)
    n_eval = max(1, round(len(urls) * eval_fraction)) if eval_fraction > 0 and len(urls) > 1 else 0
    held_out = set(urls[:n_eval])
    train = [s for s in samples if s.url not in held_out]
    evaluation = [s for s in samples if s.url in held_out]
    return train, evaluation


class ImageCache:
    """Photos on disk under `root`, named by sha256(url)."""

    def __init__(self, root: str, timeout: float = 30.0, attempts: int = 3, retry_failed: bool = False) -> None:
        self.root = root
        self.timeout = timeout
        self.attempts = attempts
        os.makedirs(root, exist_ok=True)
        self.failed_file = os.path.join(root, "failed-urls.txt")
        self.failed: Dict[str, str] = {}
        if os.path.exists(self.failed_file) and not retry_failed:
            with open(self.failed_file, encoding="utf-8") as f:
                for line in f:
                    url, _, reason = line.rstrip("\n").partition("\t")
                    if url:
                        self.failed[url] = reason

    def path_for(self, url: str) -> str:
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:40]
        return os.path.join(self.root, digest[:2], digest + ".img")

    def get(self, url: str) -> Optional[str]:
        """The cached file for `url`, downloading it first if needed; None if it cannot be had."""
        path = self.path_for(url)
        if os.path.exists(path):
            return path
        if url in self.failed:
            return None
        import requests  # only needed for downloads
        from PIL import Image

        reason = "unknown"
        for attempt in range(self.attempts):
            try:
                response = requests.get(url, timeout=self.timeout)
                if response.status_code != 200:
                    reason = f"HTTP {response.status_code}"
                    if response.status_code in (404, 403, 410):
                        break
                else:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    tmp = f"{path}.{os.getpid()}.tmp"
                    with open(tmp, "wb") as f:
                        f.write(response.content)
                    with Image.open(tmp) as image:
                        image.verify()
                    os.replace(tmp, path)
                    return path
            except Exception as error:  # network errors, undecodable images
                reason = f"{type(error).__name__}: {error}"[:200]
                for leftover in (f"{path}.{os.getpid()}.tmp",):
                    if os.path.exists(leftover):
                        os.remove(leftover)
            time.sleep(min(8.0, 2.0**attempt))
        self.failed[url] = reason
        with open(self.failed_file, "a", encoding="utf-8") as f:
            f.write(f"{url}\t{reason}\n")
        return None

    def fetch_all(self, samples: Sequence[Sample], workers: int = 8) -> Tuple[List[Tuple[Sample, str]], int]:
        """(sample, image path) for every sample whose photo is available, and the number skipped."""
        urls = sorted({s.url for s in samples})
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            paths = dict(zip(urls, pool.map(self.get, urls)))
        ready = [(s, paths[s.url]) for s in samples if paths[s.url] is not None]
        return ready, len(samples) - len(ready)  # type: ignore[return-value]


def system_prompt_problem(value: str | None) -> str | None:
    """Why a --system-prompt value cannot be meant, or None. Left out (None) trains without one;
    an empty or blank value is what the README's `vistyle styles --json | jq` line gives for a
    style id it does not find, and training on it would silently drop the style's prompt."""
    if value is None or value.strip():
        return None
    return (
        "--system-prompt is empty: the `vistyle styles --json | jq` line found no such style "
        "(check the id, and VISTYLE_STYLES_FILE for a style of your own); leave --system-prompt out "
        "to train without a system prompt"
    )
