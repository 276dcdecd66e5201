"""Small checkpoints whose tensor names match the real recipes of
tests/data/recipes/ (see its README): the layouts of SparseML's ResNet-50 and
MobileNet, torchvision's ResNet-50, BERT, YOLACT's Darknet backbone and a
Llama decoder, each shrunk to a few channels. Every tensor the recipes do
not name (norms, biases, embeddings, heads, first convs) is there too, so a
test can see that it stays untouched.

usage: /usr/bin/python3 tests/make_recipe_models.py OUT_DIR
Writes OUT_DIR/<model>.pt (torch.save of an OrderedDict state dict).
"""
import collections
import os
import sys

import torch


def conv(o, i, k):
    return torch.randn(o, i, k, k)


def sparseml_resnet50():
    """sparseml.pytorch.models.ResNet50 names: sections of 3, 4, 6, 3
    bottleneck blocks, the first of each with an identity (projection) conv."""
    sd = collections.OrderedDict()
    sd["input.conv.weight"] = conv(8, 3, 7)
    sd["input.bn.weight"] = torch.ones(8)
    for s, blocks in enumerate((3, 4, 6, 3)):
        for b in range(blocks):
            p = f"sections.{s}.{b}."
            sd[p + "conv1.weight"] = conv(8, 8, 1)
            sd[p + "bn1.weight"] = torch.ones(8)
            sd[p + "conv2.weight"] = conv(8, 8, 3)
            sd[p + "bn2.bias"] = torch.zeros(8)
            sd[p + "conv3.weight"] = conv(8, 8, 1)
            if b == 0:
                sd[p + "identity.conv.weight"] = conv(8, 8, 1)
                sd[p + "identity.bn.weight"] = torch.ones(8)
    sd["classifier.fc.weight"] = torch.randn(10, 8)
    sd["classifier.fc.bias"] = torch.randn(10)
    return sd


def torchvision_resnet50():
    """torchvision.models.resnet50 names: layer1..4 of 3, 4, 6, 3 blocks."""
    sd = collections.OrderedDict()
    sd["conv1.weight"] = conv(8, 3, 7)
    sd["bn1.weight"] = torch.ones(8)
    for layer, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}."
            sd[p + "conv1.weight"] = conv(8, 8, 1)
            sd[p + "conv2.weight"] = conv(8, 8, 3)
            sd[p + "conv3.weight"] = conv(8, 8, 1)
            sd[p + "bn3.weight"] = torch.ones(8)
            if b == 0:
                sd[p + "downsample.0.weight"] = conv(8, 8, 1)
                sd[p + "downsample.1.weight"] = torch.ones(8)
    sd["fc.weight"] = torch.randn(3, 8)
    sd["fc.bias"] = torch.randn(3)
    return sd


def sparseml_mobilenet():
    """sparseml.pytorch.models.MobileNet names: depthwise + pointwise convs."""
    sd = collections.OrderedDict()
    sd["input.conv.weight"] = conv(8, 3, 3)
    for s, blocks in enumerate((1, 2, 2, 6, 2)):
        for b in range(blocks):
            p = f"sections.{s}.{b}."
            sd[p + "depth.conv.weight"] = torch.randn(8, 1, 3, 3)
            sd[p + "depth.bn.weight"] = torch.ones(8)
            sd[p + "point.conv.weight"] = conv(8, 8, 1)
            sd[p + "point.bn.weight"] = torch.ones(8)
    sd["classifier.fc.weight"] = torch.randn(10, 8)
    return sd


def bert(layers=2, hidden=16, inter=32):
    """Hugging Face BertForQuestionAnswering names."""
    sd = collections.OrderedDict()
    sd["bert.embeddings.word_embeddings.weight"] = torch.randn(50, hidden)
    sd["bert.embeddings.position_embeddings.weight"] = torch.randn(20, hidden)
    sd["bert.embeddings.LayerNorm.weight"] = torch.ones(hidden)
    for i in range(layers):
        p = f"bert.encoder.layer.{i}."
        for n in ("query", "key", "value"):
            sd[p + f"attention.self.{n}.weight"] = torch.randn(hidden, hidden)
            sd[p + f"attention.self.{n}.bias"] = torch.randn(hidden)
        sd[p + "attention.output.dense.weight"] = torch.randn(hidden, hidden)
        sd[p + "attention.output.LayerNorm.weight"] = torch.ones(hidden)
        sd[p + "intermediate.dense.weight"] = torch.randn(inter, hidden)
        sd[p + "intermediate.dense.bias"] = torch.randn(inter)
        sd[p + "output.dense.weight"] = torch.randn(hidden, inter)
        sd[p + "output.LayerNorm.weight"] = torch.ones(hidden)
    sd["qa_outputs.weight"] = torch.randn(2, hidden)
    sd["qa_outputs.bias"] = torch.randn(2)
    return sd


def yolact():
    """dbolya/yolact with a Darknet-53 backbone (the names its recipes use)."""
    sd = collections.OrderedDict()
    for layer, blocks in enumerate((1, 2, 8, 8, 4)):
        # the first conv (layers.0.0.0, on the image) is not in the recipe
        sd[f"backbone.layers.{layer}.0.0.weight"] = conv(8, 3 if layer == 0 else 8, 3)
        sd[f"backbone.layers.{layer}.0.1.weight"] = torch.ones(8)
        for b in range(1, blocks + 1):
            p = f"backbone.layers.{layer}.{b}."
            sd[p + "conv1.0.weight"] = conv(8, 8, 1)
            sd[p + "conv1.1.weight"] = torch.ones(8)
            sd[p + "conv2.0.weight"] = conv(8, 8, 3)
    for i in (0, 2, 4, 8, 10):  # 6 is an upsampling layer: no weights
        sd[f"proto_net.{i}.weight"] = conv(8, 8, 3)
        sd[f"proto_net.{i}.bias"] = torch.zeros(8)
    for i in range(3):
        sd[f"fpn.lat_layers.{i}.weight"] = conv(8, 8, 1)
        sd[f"fpn.pred_layers.{i}.weight"] = conv(8, 8, 3)
    for i in range(2):
        sd[f"fpn.downsample_layers.{i}.weight"] = conv(8, 8, 3)
    p = "prediction_layers.0."
    sd[p + "upfeature.0.weight"] = conv(8, 8, 3)
    sd[p + "bbox_layer.weight"] = conv(12, 8, 3)
    sd[p + "conf_layer.weight"] = conv(24, 8, 3)
    sd[p + "mask_layer.weight"] = conv(8, 8, 3)
    sd["semantic_seg_conv.weight"] = conv(4, 8, 1)
    return sd


def llama(layers=6, hidden=16, inter=32, vocab=64):
    """Hugging Face LlamaForCausalLM names."""
    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = torch.randn(vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("q", "k", "v", "o"):
            sd[p + f"self_attn.{n}_proj.weight"] = torch.randn(hidden, hidden)
        sd[p + "mlp.gate_proj.weight"] = torch.randn(inter, hidden)
        sd[p + "mlp.up_proj.weight"] = torch.randn(inter, hidden)
        sd[p + "mlp.down_proj.weight"] = torch.randn(hidden, inter)
        sd[p + "input_layernorm.weight"] = torch.ones(hidden)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(hidden)
    sd["model.norm.weight"] = torch.ones(hidden)
    sd["lm_head.weight"] = torch.randn(vocab, hidden)
    return sd


MODELS = {
    "sparseml_resnet50": sparseml_resnet50,
    "torchvision_resnet50": torchvision_resnet50,
    "sparseml_mobilenet": sparseml_mobilenet,
    "bert": bert,
    "yolact": yolact,
    "llama": llama,
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for i, (name, make) in enumerate(MODELS.items()):
        torch.manual_seed(1000 + i)
        torch.save(make(), os.path.join(out, name + ".pt"))


if __name__ == "__main__":
    main()
