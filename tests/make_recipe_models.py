"""Small checkpoints whose tensor names match the real recipes of
tests/data/recipes/ (see its README): the layouts of SparseML's ResNet-50 and
MobileNet, torchvision's ResNet-50, BERT, YOLACT's Darknet backbone and a
Llama decoder, each shrunk to a few channels. Every tensor the recipes do
not name (norms, biases, embeddings, heads, first convs) is there too, so a
test can see that it stays untouched.

For `sparsify finetune`, TorchScript models with torchvision's ResNet-50
names (the same bottleneck layout, 8 channels, on 8x8 images) and with
Llama's names (two decoder layers on 16-wide vectors), and a small data set
for each (tensor files with `inputs` and `labels`).

usage: /usr/bin/python3 tests/make_recipe_models.py OUT_DIR
Writes OUT_DIR/<model>.pt (torch.save of an OrderedDict state dict),
OUT_DIR/resnet_ts.pt and tinylm_ts.pt (torch.jit.save), images.pt and
vectors.pt.
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


class Bottleneck(torch.nn.Module):
    """torchvision's Bottleneck, shrunk: conv1 1x1, conv2 3x3, conv3 1x1,
    a projection on the first block of a layer."""

    def __init__(self, c, project):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, c, 1, bias=False)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv3 = torch.nn.Conv2d(c, c, 1, bias=False)
        self.bn3 = torch.nn.BatchNorm2d(c)
        self.downsample = torch.nn.Sequential(torch.nn.Conv2d(c, c, 1, bias=False), torch.nn.BatchNorm2d(c)) \
            if project else torch.nn.Sequential()

    def forward(self, x):
        out = torch.relu(self.conv1(x))
        out = torch.relu(self.conv2(out))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.downsample(x))


class ResNet(torch.nn.Module):
    def __init__(self, c=8, classes=3):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, c, 7, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c)
        self.layer1 = torch.nn.Sequential(*[Bottleneck(c, i == 0) for i in range(3)])
        self.layer2 = torch.nn.Sequential(*[Bottleneck(c, i == 0) for i in range(4)])
        self.layer3 = torch.nn.Sequential(*[Bottleneck(c, i == 0) for i in range(6)])
        self.layer4 = torch.nn.Sequential(*[Bottleneck(c, i == 0) for i in range(3)])
        self.fc = torch.nn.Linear(c, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class Attention(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.q_proj = torch.nn.Linear(h, h, bias=False)
        self.o_proj = torch.nn.Linear(h, h, bias=False)

    def forward(self, x):
        return self.o_proj(torch.tanh(self.q_proj(x)))


class Mlp(torch.nn.Module):
    def __init__(self, h, inter):
        super().__init__()
        self.up_proj = torch.nn.Linear(h, inter, bias=False)
        self.down_proj = torch.nn.Linear(inter, h, bias=False)

    def forward(self, x):
        return self.down_proj(torch.relu(self.up_proj(x)))


class Layer(torch.nn.Module):
    def __init__(self, h, inter):
        super().__init__()
        self.input_layernorm = torch.nn.LayerNorm(h)
        self.self_attn = Attention(h)
        self.mlp = Mlp(h, inter)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(x)


class Decoder(torch.nn.Module):
    def __init__(self, layers, h, inter):
        super().__init__()
        self.layers = torch.nn.ModuleList([Layer(h, inter) for _ in range(layers)])
        self.norm = torch.nn.LayerNorm(h)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class TinyLM(torch.nn.Module):
    """Llama's names (model.layers.N.self_attn.q_proj, ...) on a classifier
    of 16-wide vectors, so finetune can train what the LLM recipes name."""

    def __init__(self, layers=2, h=16, inter=32, classes=4):
        super().__init__()
        self.model = Decoder(layers, h, inter)
        self.lm_head = torch.nn.Linear(h, classes, bias=False)

    def forward(self, x):
        return self.lm_head(self.model(x))


def torchscript(out):
    torch.manual_seed(7)
    torch.jit.script(ResNet()).save(os.path.join(out, "resnet_ts.pt"))
    # three classes of 8x8 images: which colour channel is brightest
    g = torch.Generator().manual_seed(8)
    x = torch.rand(96, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (96,), generator=g)
    x[torch.arange(96), y] += 0.5
    torch.save({"inputs": x, "labels": y.float()}, os.path.join(out, "images.pt"))
    torch.manual_seed(9)
    torch.jit.script(TinyLM()).save(os.path.join(out, "tinylm_ts.pt"))
    v = torch.randn(128, 16, generator=g)
    torch.save({"inputs": v, "labels": v[:, :4].argmax(1).float()}, os.path.join(out, "vectors.pt"))


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
    torchscript(out)


if __name__ == "__main__":
    main()
