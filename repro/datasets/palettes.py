"""Colour tables that datasets' authors publish, stored as data (one RGB triple per class).

Only ADE20k has one here. COCO-Stuff's authors publish no table: nightrome/cocostuff10k
dataset/code/cmapThingsStuff.m, cmapThings.m and cmapStuff.m (read at commit
6fdadd86860dbeb517ae2822d23329348c1c6196) compute its colours at run time from MATLAB's jet
colour map shuffled by MATLAB's rng(42) randperm, which cannot be reproduced outside MATLAB.
VSPW's own repositories (VSPW-dataset/VSPW_code, VSPW_baseline, VSPW-dataset-download)
publish none either. Those two keep the deterministic colour map of
`repro.datasets.registry.bit_colour_map`.
"""

from __future__ import annotations

# ADE20k, SceneParsing benchmark order (class 0 = 'wall', as repro.datasets.ade20k.CLASS_NAMES,
# checked name by name against data/object150_info.csv of the same repository). Source: the MIT
# CSAIL colour table, repository CSAILVision/semantic-segmentation-pytorch, file
# data/color150.mat (key 'colors', 150x3 uint8, blob c518b64fbbe899d4a8b2705f012eeba795339892,
# last changed in commit 1e619d683d08f6bf6106c76179bf6853c496f157, read at HEAD
# 8f27c9b97d2ca7c6e05333d5766d144bf7d8c31b), written as RRGGBB hex per class. The table gives
# 'road, route' (6) and 'skyscraper' (48) the same grey (140, 140, 140); kept as published.
_ADE20K_HEX = (  # classes per line
    "787878b4787806e6e650323204c8037878508c8c8ccc05ffe6e6e604fa07e005ffebff07"  # 0-11
    "96053d78784608ff33ff06528fff8cccff04ff3307cc46030066c83de6faff06330b66ff"  # 12-23
    "ff0747ff09e00907e6dcdcdcff095c7009ff08ffd607ffe0ffb8060aff47ff290a07ffff"  # 24-35
    "e0ff086608ffff3d06ffc207ff7a0800ff14ff0829ff05990633ffeb0cffa0961400a3ff"  # 36-47
    "8c8c8cfa0a0f14ff001fff00ff1f00ffe00099ff000000ffff470000ebff00adff1f00ff"  # 48-59
    "0bc8c8ff520000fff5003dff00ff7000ff85ff0000ffa300ff6600c2ff00008fff33ff00"  # 60-71
    "0052ff00ff2900ffad0a00ffadff0000ff99ff5c00ff00ffff00f5ff0066ffad00ff0014"  # 72-83
    "ffb8b8001fff00ff3d0047ffff00cc00ffc200ff52000aff0070ff3300ff00c2ff007aff"  # 84-95
    "00ffa3ff990000ff0aff70008fff005200ffa3ff00ffeb0008b8aa8500ff00ff5cb800ff"  # 96-107
    "ff001f00b8ff00d6ffff00705cff0000e0ff70e0ff46b8a0a300ff9900ff47ff00ff00a3"  # 108-119
    "ffcc00ff008f00ffeb85ff00ff00ebf500ffff007afff5000abed4d6ff0000ccff1400ff"  # 120-131
    "ffff000099ff0029ff00ffcc2900ff29ff00ad00ff00f5ff4700ff7a00ff00ffb8005cff"  # 132-143
    "b8ff000085ffffd60019c2c266ff005c00ff"  # 144-149
)


def rgb_triples(hex_table: str) -> tuple[tuple[int, int, int], ...]:
    """The (R, G, B) triples of a table written as consecutive RRGGBB hex digits."""
    values = bytes.fromhex(hex_table)
    if len(values) % 3:
        raise ValueError(f"a colour table of {len(values)} bytes is not a list of RGB triples")
    return tuple((values[i], values[i + 1], values[i + 2]) for i in range(0, len(values), 3))


ADE20K_COLOURS = rgb_triples("".join(_ADE20K_HEX))
