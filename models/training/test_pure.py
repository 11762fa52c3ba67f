"""Tests of the trainer's torch-free parts: python3 -m unittest models/training/test_pure.py"""

import json
import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import data  # noqa: E402  (stdlib at import time; requests/PIL only when downloading)
import labels  # noqa: E402
import peft_format  # noqa: E402


class SystemPromptTests(unittest.TestCase):
    def test_an_empty_or_blank_prompt_is_refused_with_the_likely_cause(self):
        for value in ["", "  ", "\n"]:
            problem = data.system_prompt_problem(value)
            self.assertIsNotNone(problem)
            self.assertIn("found no such style", problem)

    def test_left_out_or_given_is_fine(self):
        self.assertIsNone(data.system_prompt_problem(None))
        self.assertIsNone(data.system_prompt_problem("You are a grumpy baker."))


class LabelTests(unittest.TestCase):
    HEADER = [501, 97, 10]  # <|im_start|> "a" "\n" stands for <|im_start|>assistant\n

    def test_masks_everything_up_to_and_including_the_last_header(self):
        ids = [501, 117, 10, 503, 503, 63, 502, 10] + self.HEADER + [72, 105, 502]
        got = labels.answer_labels(ids, self.HEADER)
        self.assertEqual(got, [-100] * 11 + [72, 105, 502])

    def test_uses_the_last_header_when_few_shot_turns_have_their_own(self):
        ids = [1] + self.HEADER + [5, 6, 502] + [2] + self.HEADER + [7, 502]
        got = labels.answer_labels(ids, self.HEADER)
        self.assertEqual(got, [-100] * 11 + [7, 502])

    def test_masks_padding(self):
        ids = self.HEADER + [7, 8, 0, 0]
        got = labels.answer_labels(ids, self.HEADER, attention_mask=[1, 1, 1, 1, 1, 0, 0])
        self.assertEqual(got, [-100, -100, -100, 7, 8, -100, -100])

    def test_refuses_examples_without_an_answer(self):
        with self.assertRaises(ValueError):
            labels.answer_labels([1, 2, 3], self.HEADER)
        with self.assertRaises(ValueError):
            labels.answer_labels([1] + self.HEADER, self.HEADER)

    def test_header_from_two_renderings(self):
        tokenize = lambda text: [ord(c) for c in text]  # noqa: E731
        self.assertEqual(labels.assistant_header_ids(tokenize, "u: hi\nA:\n", "u: hi\n"), [ord("A"), ord(":"), 10])
        with self.assertRaises(ValueError):
            labels.assistant_header_ids(tokenize, "x", "y")


class SequenceTests(unittest.TestCase):
    def test_expands_each_image_placeholder(self):
        self.assertEqual(labels.expand_image_tokens([1, 9, 2, 9], 9, 3), [1, 9, 9, 9, 2, 9, 9, 9])
        with self.assertRaises(ValueError):
            labels.expand_image_tokens([1], 9, 0)

    def test_pads_right_with_a_mask(self):
        ids, mask = labels.pad_right([[1, 2, 3], [4]], 0)
        self.assertEqual(ids, [[1, 2, 3], [4, 0, 0]])
        self.assertEqual(mask, [[1, 1, 1], [1, 0, 0]])

    def test_image_feature_count(self):
        self.assertEqual(labels.image_feature_count(384, 14, "full"), 729)
        self.assertEqual(labels.image_feature_count(336, 14, "default"), 575)


class PeftFormatTests(unittest.TestCase):
    def test_key_names(self):
        self.assertEqual(
            peft_format.lora_weight_key("language_model.model.layers.3.self_attn.q_proj", "A"),
            "base_model.model.language_model.model.layers.3.self_attn.q_proj.lora_A.weight",
        )
        self.assertEqual(
            peft_format.lora_weight_key("model.vision_tower.vision_model.encoder.layers.0.self_attn.out_proj", "B"),
            "base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.out_proj.lora_B.weight",
        )
        with self.assertRaises(ValueError):
            peft_format.lora_weight_key("base_model.model.x", "A")

    def test_targets(self):
        self.assertTrue(peft_format.is_target("vision_tower.vision_model.encoder.layers.0.self_attn.q_proj", ["q_proj"]))
        self.assertFalse(peft_format.is_target("language_model.model.layers.0.self_attn.q_proj_x", ["q_proj"]))
        self.assertTrue(peft_format.is_attention_projection("language_model.model.layers.0.self_attn.o_proj"))
        self.assertFalse(peft_format.is_attention_projection("multi_modal_projector.linear_1"))
        self.assertFalse(peft_format.is_attention_projection("language_model.model.layers.0.mlp.up_proj"))

    def test_safetensors_layout(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.safetensors")
            peft_format.write_safetensors(path, {"b": ([1, 2], peft_format.float32_bytes([1.0, 2.0])), "a": ([1], peft_format.float32_bytes([3.0]))})
            with open(path, "rb") as f:
                raw = f.read()
            (n,) = struct.unpack("<Q", raw[:8])
            self.assertEqual((8 + n) % 8, 0)
            header = json.loads(raw[8 : 8 + n])
            self.assertEqual(header["a"], {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})
            self.assertEqual(header["b"], {"dtype": "F32", "shape": [1, 2], "data_offsets": [4, 12]})
            self.assertEqual(struct.unpack("<3f", raw[8 + n :]), (3.0, 1.0, 2.0))
            with self.assertRaises(ValueError):
                peft_format.write_safetensors(path, {"a": ([2], b"1234")})

    def test_adapter_config_is_peft_lora(self):
        config = peft_format.adapter_config(r=8, lora_alpha=16, target_modules=["q_proj"])
        self.assertEqual((config["peft_type"], config["r"], config["lora_alpha"], config["bias"]), ("LORA", 8, 16, "none"))
        self.assertFalse(config["use_dora"])


class DataTests(unittest.TestCase):
    def test_reads_what_vistyle_data_make_writes_and_the_seed_arrays(self):
        with tempfile.TemporaryDirectory() as d:
            made = os.path.join(d, "grumpy.jsonl")
            with open(made, "w", encoding="utf-8") as f:
                # a row as `vistyle data make` appends it, and a blank line
                f.write(json.dumps({"question": " 有几只猫？", "ans": "两只！", "url": "https://x/1.jpg", "caption": "c", "style": "grumpy"}, ensure_ascii=False) + "\n\n")
                f.write(json.dumps({"question": "q2", "answer": "a2", "url": "https://x/2.jpg"}) + "\n")
            self.assertEqual(
                data.read_samples(made),
                [data.Sample("有几只猫？", "两只！", "https://x/1.jpg"), data.Sample("q2", "a2", "https://x/2.jpg")],
            )
            seed = os.path.join(d, "angry.json")
            with open(seed, "w", encoding="utf-8") as f:
                json.dump([{"question": "q", "ans": "a", "url": "https://x/3.jpg"}], f)
            self.assertEqual(data.read_samples(seed), [data.Sample("q", "a", "https://x/3.jpg")])
            with open(seed, "w", encoding="utf-8") as f:
                json.dump([{"question": "q", "url": "https://x/3.jpg"}], f)
            with self.assertRaises(ValueError):
                data.read_samples(seed)

    def test_holds_out_whole_photos(self):
        samples = [data.Sample(f"q{i}", "a", f"u{i % 10}") for i in range(40)]
        train, held_out = data.split_by_image(samples, 0.2, seed=3)
        self.assertEqual(len({s.url for s in held_out}), 2)
        self.assertFalse({s.url for s in train} & {s.url for s in held_out})
        self.assertEqual(len(train) + len(held_out), 40)


if __name__ == "__main__":
    unittest.main()
