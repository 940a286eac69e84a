"""The per-task tables of the papers' repositories, copied by hand for tests/test_recipe_sources.py.

Each table is a literal copy of the source files named in its comment (repository @ commit : path), keyed by
the source's own task names; the test maps those names onto peftbench's and checks every recipe in
configs/experiment/ against them. Data only: no code here.
"""

from __future__ import annotations

# ZhangYuanhan-AI/NOAH @ e9c55f3 : experiments/NOAH/subnet/VTAB/ViT-B_prompt_<task>.yaml, RETRAIN
# (VISUAL_PROMPT_DIM, LORA_DIM, ADAPTER_DIM per block; PREFIX_DIM is all zero), keyed by NOAH's file names
NOAH_SUBNETS: dict[str, tuple[list[int], list[int], list[int]]] = {
    'caltech101': ([5, 10, 1, 5, 10, 1, 10, 1, 10, 1, 10, 1], [1, 10, 10, 10, 5, 10, 10, 10, 5, 1, 10, 1], [10, 1, 5, 10, 10, 1, 5, 5, 10, 1, 5, 10]),
    'cifar100': ([10, 5, 10, 1, 5, 1, 10, 1, 10, 5, 1, 10], [10, 1, 5, 5, 1, 10, 1, 1, 1, 10, 1, 1], [5, 10, 10, 10, 5, 1, 1, 1, 10, 10, 10, 1]),
    'clevr_count': ([10, 1, 5, 10, 5, 1, 10, 5, 5, 5, 10, 1], [1, 1, 10, 5, 10, 10, 10, 1, 5, 1, 10, 1], [1, 10, 10, 10, 10, 1, 5, 10, 10, 10, 1, 1]),
    'clevr_dist': ([10, 1, 1, 10, 5, 10, 5, 1, 5, 10, 5, 5], [5, 1, 10, 5, 10, 10, 1, 1, 5, 10, 1, 10], [1, 1, 1, 10, 1, 1, 1, 10, 5, 1, 10, 10]),
    'diabetic_retinopathy': ([10, 1, 5, 10, 1, 5, 5, 10, 5, 10, 5, 5], [1, 1, 10, 5, 5, 10, 1, 10, 10, 5, 10, 1], [1, 1, 5, 5, 10, 10, 10, 5, 1, 10, 10, 1]),
    'dmlab': ([1, 10, 5, 1, 10, 10, 5, 10, 10, 1, 1, 1], [10, 5, 1, 5, 10, 10, 5, 5, 5, 10, 10, 1], [5, 1, 5, 1, 5, 1, 5, 5, 5, 10, 10, 10]),
    'dsprites_loc': ([5, 10, 1, 10, 10, 5, 5, 1, 5, 5, 10, 1], [1, 1, 1, 1, 10, 10, 1, 10, 5, 1, 5, 10], [1, 1, 1, 10, 1, 1, 10, 10, 10, 10, 10, 1]),
    'dsprites_ori': ([5, 5, 1, 1, 10, 5, 1, 10, 10, 10, 10, 10], [1, 10, 1, 10, 1, 5, 10, 10, 5, 5, 1, 5], [1, 10, 10, 10, 10, 1, 5, 10, 10, 10, 1, 1]),
    'dtd': ([10, 5, 1, 1, 5, 10, 5, 1, 1, 5, 1, 1], [10, 5, 1, 1, 5, 10, 5, 1, 1, 5, 1, 1], [1, 1, 1, 10, 1, 1, 10, 10, 10, 10, 10, 1]),
    'eurosat': ([10, 10, 10, 10, 10, 1, 5, 5, 10, 10, 5, 10], [10, 1, 10, 10, 1, 5, 10, 1, 1, 1, 10, 1], [10, 10, 5, 1, 10, 1, 10, 5, 10, 1, 10, 10]),
    'kitti': ([1, 5, 10, 1, 10, 5, 1, 1, 1, 5, 5, 5], [5, 10, 10, 10, 1, 10, 5, 5, 10, 5, 10, 1], [5, 1, 10, 10, 1, 10, 1, 1, 5, 10, 5, 5]),
    'oxford_flowers102': ([10, 10, 5, 5, 1, 10, 1, 5, 10, 1, 5, 10], [10, 10, 5, 5, 1, 10, 1, 5, 10, 1, 5, 10], [5, 1, 5, 5, 1, 1, 10, 5, 5, 10, 5, 10]),
    'oxford_pet': ([10, 5, 5, 10, 1, 10, 10, 10, 10, 5, 10, 10], [10, 1, 1, 10, 5, 1, 1, 5, 10, 10, 1, 10], [1, 5, 5, 5, 5, 10, 1, 5, 10, 1, 1, 5]),
    'patch_camelyon': ([10, 10, 5, 10, 1, 10, 10, 10, 5, 1, 5, 5], [10, 10, 1, 10, 1, 1, 5, 5, 5, 1, 5, 5], [5, 1, 10, 5, 5, 1, 1, 10, 1, 5, 1, 5]),
    'resisc45': ([5, 5, 10, 1, 5, 1, 5, 10, 1, 1, 5, 1], [10, 10, 5, 5, 5, 10, 10, 10, 1, 5, 1, 5], [5, 5, 5, 1, 5, 1, 10, 5, 5, 1, 5, 5]),
    'smallnorb_azi': ([1, 10, 1, 10, 1, 5, 10, 10, 1, 10, 10, 5], [10, 5, 1, 5, 1, 1, 5, 5, 10, 1, 1, 10], [5, 1, 1, 1, 5, 5, 1, 10, 1, 1, 5, 1]),
    'smallnorb_ele': ([10, 1, 1, 1, 1, 5, 10, 10, 10, 10, 1, 10], [10, 1, 1, 1, 5, 5, 10, 5, 1, 10, 1, 1], [1, 1, 1, 10, 1, 1, 10, 10, 10, 10, 10, 1]),
    'sun397': ([5, 1, 10, 5, 5, 10, 1, 5, 1, 1, 1, 1], [10, 10, 5, 5, 1, 1, 10, 1, 1, 1, 1, 10], [10, 5, 1, 1, 1, 10, 5, 5, 1, 1, 5, 1]),
    'svhn': ([10, 5, 5, 10, 5, 5, 5, 5, 5, 5, 5, 5], [5, 5, 5, 10, 5, 5, 5, 10, 10, 10, 10, 5], [5, 5, 5, 5, 5, 10, 5, 10, 5, 5, 5, 5]),
}

# JieShibo/PETL-ViT @ 026e4f1 : FacT/configs/tt/<task>.yaml (rank, scale)
FACT_TT: dict[str, tuple[int, float]] = {
    'caltech101': (16, 10.0), 'cifar': (8, 1.0), 'clevr_count': (16, 1.0), 'clevr_dist': (4, 10.0),
    'diabetic_retinopathy': (8, 1.0), 'dmlab': (16, 10.0), 'dsprites_loc': (16, 100.0), 'dsprites_ori': (16, 1.0),
    'dtd': (8, 0.01), 'eurosat': (8, 100.0), 'kitti': (16, 10.0), 'oxford_flowers102': (16, 1.0),
    'oxford_iiit_pet': (8, 1.0), 'patch_camelyon': (8, 10.0), 'resisc45': (8, 0.1), 'smallnorb_azi': (16, 100.0),
    'smallnorb_ele': (8, 10.0), 'sun397': (8, 1.0), 'svhn': (16, 100.0),
}
# JieShibo/PETL-ViT @ 026e4f1 : FacT/configs/tk/<task>.yaml (rank, scale)
FACT_TK: dict[str, tuple[int, float]] = {
    'caltech101': (32, 10.0), 'cifar': (32, 0.1), 'clevr_count': (32, 10.0), 'clevr_dist': (16, 10.0),
    'diabetic_retinopathy': (16, 1.0), 'dmlab': (32, 10.0), 'dsprites_loc': (32, 100.0), 'dsprites_ori': (32, 1.0),
    'dtd': (16, 0.01), 'eurosat': (32, 100.0), 'kitti': (32, 10.0), 'oxford_flowers102': (32, 1.0),
    'oxford_iiit_pet': (16, 10.0), 'patch_camelyon': (32, 10.0), 'resisc45': (32, 10.0), 'smallnorb_azi': (32, 100.0),
    'smallnorb_ele': (16, 10.0), 'sun397': (16, 1.0), 'svhn': (32, 100.0),
}
# JieShibo/PETL-ViT @ 026e4f1 : convpass/vtab/configs/convpass/<task>.yaml (scale, xavier_init)
CONVPASS: dict[str, tuple[float, bool]] = {
    'caltech101': (1.0, False), 'cifar': (0.1, False), 'clevr_count': (1.0, False), 'clevr_dist': (0.1, True),
    'diabetic_retinopathy': (1.0, False), 'dmlab': (10.0, False), 'dsprites_loc': (100.0, True), 'dsprites_ori': (0.1, True),
    'dtd': (0.01, True), 'eurosat': (10.0, False), 'kitti': (10.0, True), 'oxford_flowers102': (0.1, True),
    'oxford_iiit_pet': (1.0, True), 'patch_camelyon': (10.0, False), 'resisc45': (10.0, False), 'smallnorb_azi': (100.0, True),
    'smallnorb_ele': (1.0, True), 'sun397': (0.1, False), 'svhn': (100.0, True),
}
# luogen1996/RepAdapter @ 360992f : configs/repblock/<task>.yaml (scale)
REPADAPTER: dict[str, float] = {
    'caltech101': 5.0, 'cifar': 0.1, 'clevr_count': 0.5, 'clevr_dist': 0.1, 'diabetic_retinopathy': 0.1,
    'dmlab': 5.0, 'dsprites_loc': 5.0, 'dsprites_ori': 0.1, 'dtd': 1.0, 'eurosat': 1.0,
    'kitti': 5.0, 'oxford_flowers102': 0.5, 'oxford_iiit_pet': 0.1, 'patch_camelyon': 1.0, 'resisc45': 5.0,
    'smallnorb_azi': 10.0, 'smallnorb_ele': 1.0, 'sun397': 0.1, 'svhn': 10.0,
}

# dongzelian/SSF @ e94e0e7 : train_scripts/vit/vtab/<folder>/train_ssf.sh (--lr, --weight-decay, --drop-path), keyed by SSF's folder names
SSF_VTAB: dict[str, tuple[float, ...]] = {
    'caltech101': (0.001, 0.05, 0.1), 'cifar_100': (0.005, 5e-05, 0.0), 'clevr_count': (0.002, 0.05, 0.1),
    'clevr_dist': (0.05, 0.05, 0.1), 'diabetic_retinopathy': (0.005, 5e-05, 0.2), 'dmlab': (0.005, 5e-05, 0.1),
    'dsprites_loc': (0.01, 5e-05, 0.0), 'dsprites_ori': (0.005, 5e-05, 0.2), 'dtd': (0.005, 5e-05, 0.0),
    'eurosat': (0.003, 0.05, 0.2), 'flowers102': (0.005, 5e-05, 0.0), 'kitti': (0.01, 5e-05, 0.0),
    'patch_camelyon': (0.005, 5e-05, 0.0), 'pets': (0.005, 5e-05, 0.0), 'resisc45': (0.002, 5e-05, 0.1),
    'smallnorb_azi': (0.02, 5e-05, 0.1), 'smallnorb_ele': (0.005, 0.05, 0.2), 'sun397': (0.005, 5e-05, 0.0),
    'svhn': (0.01, 5e-05, 0.0),
}
# dongzelian/SSF @ e94e0e7 : train_scripts/vit/fgvc/<folder>/train_ssf.sh (--lr, --weight-decay, --drop-path, --model-ema-decay), keyed by SSF's folder names
SSF_FGVC: dict[str, tuple[float, ...]] = {
    'cub_2011': (0.01, 0.05, 0.0, 0.9998), 'nabirds': (0.0002, 0.05, 0.1, 0.9998), 'oxford_flowers': (0.01, 0.05, 0.1, 0.999),
    'stanford_cars': (0.02, 0.05, 0.0, 0.9998), 'stanford_dogs': (0.00025, 0.05, 0.0, 0.9998),
}

# KMnP/vpt @ 4410440 : configs/{prompt,linear,finetune}/<dataset>.yaml SOLVER (BASE_LR, WEIGHT_DECAY)
VPT_FGVC_CONFIGS: dict[str, dict[str, tuple[float, float]]] = {
    'prompt': {
        'cars': (0.001, 0.0001), 'cub': (0.1, 0.01), 'dogs': (0.001, 0.0001), 'flowers': (0.001, 0.0001), 'nabirds': (0.1, 0.01),
    },
    'linear': {
        'cars': (0.001, 0.0001), 'cub': (0.1, 0.01), 'dogs': (0.001, 0.0001), 'flowers': (0.001, 0.0001), 'nabirds': (0.1, 0.01),
    },
    'finetune': {
        'cars': (0.0375, 0.001), 'cub': (0.00375, 0.01), 'dogs': (0.00375, 0.001), 'flowers': (0.001, 0.0001), 'nabirds': (0.00375, 0.01),
    },
}
# KMnP/vpt @ 4410440 : demo.ipynb, the three final-run commands (DATA.BATCH_SIZE, MODEL.PROMPT.NUM_TOKENS,
# SOLVER.BASE_LR as passed (already x batch / 256), SOLVER.WEIGHT_DECAY), keyed by DATA.NAME
VPT_DEMO: dict[str, tuple[int, int, float, float]] = {
    'vtab-dmlab': (64, 100, 0.25, 0.001), 'vtab-sun397': (128, 5, 12.5, 0.0001), 'vtab-eurosat': (64, 100, 0.25, 0.001),
}
# visinf/adapter_plus @ 191c4ab : conf/experiment/vtab/vpt.yaml dataset_tokens (VPT-deep prompt lengths, a public
# copy of the VPT authors' sheet), keyed by adapter_plus's dataset names
VPT_DEEP_LENGTHS_VTAB: dict[str, int] = {
    'cifar100': 10, 'caltech101': 10, 'dtd': 10, 'flowers102': 1, 'pet': 1,
    'svhn': 50, 'sun397': 5, 'camelyon': 100, 'eurosat': 100, 'resisc45': 10,
    'retinopathy': 1, 'clevr_count': 100, 'clevr_distance': 200, 'dmlab': 100, 'kitti': 100,
    'dsprites_position': 100, 'dsprites_orientation': 100, 'smallnorb_azimuth': 200, 'smallnorb_elevation': 200,
}
# visinf/adapter_plus @ 191c4ab : conf/experiment/fgvc/vpt.yaml dataset_tokens (VPT-deep prompt lengths, a public
# copy of the VPT authors' sheet), keyed by adapter_plus's dataset names
VPT_DEEP_LENGTHS_FGVC: dict[str, int] = {
    'cub': 10, 'nabirds': 50, 'oxfordflower': 5, 'stanfordcars': 200, 'stanforddogs': 100,
}

# synbol/Parameter-Efficient-Transfer-Learning-Benchmark @ c188fad : ImageClassification/scripts/run_vit_<script>.sh,
# (--lr, --wd) of each command, keyed by the script's --dataset names (VTAB then FGVC)
VPETL_SCRIPTS: dict[str, dict[str, tuple[float, float]]] = {
    'lora': {
        'CUB_200_2011': (0.001, 0.05), 'nabirds': (0.0002, 0.05), 'OxfordFlower': (0.001, 0.05), 'StanfordDogs': (0.00025, 0.05),
        'StanfordCars': (0.002, 0.05), 'cifar100': (0.005, 0.005), 'caltech101': (0.006, 0.35), 'dtd': (0.0032, 0.04),
        'oxford_flowers102': (0.05, 0.11), 'oxford_iiit_pet': (0.0007, 0.8), 'svhn': (0.001, 0.005), 'sun397': (0.0017, 0.01),
        'patch_camelyon': (0.0072, 0.002), 'eurosat': (0.06, 0.001), 'resisc45': (0.01, 0.01), 'diabetic_retinopathy': (0.004, 0.0003),
        'clevr_count': (0.0033, 0.01), 'clevr_dist': (0.0018, 0.005), 'dmlab': (0.009, 0.1), 'kitti': (0.0072, 0.0001),
        'dsprites_loc': (0.003, 0.001), 'dsprites_ori': (0.01, 0.05), 'smallnorb_azi': (0.0062, 0.005), 'smallnorb_ele': (0.0011, 0.0005),
    },
    'adapter': {
        'CUB_200_2011': (0.001, 0.05), 'nabirds': (0.0002, 0.05), 'OxfordFlower': (0.001, 0.05), 'StanfordDogs': (0.00025, 0.05),
        'StanfordCars': (0.002, 0.05), 'cifar100': (0.01, 1.0), 'caltech101': (0.006, 0.35), 'dtd': (0.0032, 0.04),
        'oxford_flowers102': (0.05, 0.11), 'oxford_iiit_pet': (0.0007, 0.8), 'svhn': (0.001, 0.005), 'sun397': (0.0017, 0.01),
        'patch_camelyon': (0.0072, 0.002), 'eurosat': (0.06, 0.001), 'resisc45': (0.01, 0.01), 'diabetic_retinopathy': (0.004, 0.0003),
        'clevr_count': (0.0033, 0.01), 'clevr_dist': (0.0018, 0.005), 'dmlab': (0.009, 0.1), 'kitti': (0.0072, 0.0001),
        'dsprites_loc': (0.003, 0.001), 'dsprites_ori': (0.01, 0.05), 'smallnorb_azi': (0.0062, 0.005), 'smallnorb_ele': (0.0011, 0.0005),
    },
    'adaptformer': {
        'CUB_200_2011': (0.001, 0.05), 'nabirds': (0.0002, 0.05), 'OxfordFlower': (0.001, 0.05), 'StanfordDogs': (0.00025, 0.05),
        'StanfordCars': (0.002, 0.05), 'cifar100': (0.01, 1.0), 'caltech101': (0.006, 0.35), 'dtd': (0.0032, 0.04),
        'oxford_flowers102': (0.05, 0.11), 'oxford_iiit_pet': (0.0007, 0.8), 'svhn': (0.001, 0.005), 'sun397': (0.0017, 0.01),
        'patch_camelyon': (0.0072, 0.002), 'eurosat': (0.06, 0.001), 'resisc45': (0.01, 0.01), 'diabetic_retinopathy': (0.004, 0.0003),
        'clevr_count': (0.0033, 0.01), 'clevr_dist': (0.0018, 0.005), 'dmlab': (0.009, 0.1), 'kitti': (0.0072, 0.0001),
        'dsprites_loc': (0.003, 0.001), 'dsprites_ori': (0.01, 0.05), 'smallnorb_azi': (0.0062, 0.005), 'smallnorb_ele': (0.0011, 0.0005),
    },
    'bitfit': {
        'CUB_200_2011': (0.001, 0.05), 'nabirds': (0.0002, 0.05), 'OxfordFlower': (0.001, 0.05), 'StanfordDogs': (0.00025, 0.05),
        'StanfordCars': (0.002, 0.05), 'cifar100': (0.003, 0.0001), 'caltech101': (0.006, 0.25), 'dtd': (0.0032, 0.04),
        'oxford_flowers102': (0.05, 0.11), 'oxford_iiit_pet': (0.0007, 0.8), 'svhn': (0.001, 0.005), 'sun397': (0.0017, 0.01),
        'patch_camelyon': (0.0072, 0.002), 'eurosat': (0.06, 0.001), 'resisc45': (0.01, 0.01), 'diabetic_retinopathy': (0.004, 0.0003),
        'clevr_count': (0.0033, 0.01), 'clevr_dist': (0.0018, 0.005), 'dmlab': (0.009, 0.1), 'kitti': (0.0072, 0.0001),
        'dsprites_loc': (0.003, 0.001), 'dsprites_ori': (0.01, 0.05), 'smallnorb_azi': (0.0062, 0.005), 'smallnorb_ele': (0.0011, 0.0005),
    },
    'fclayer': {
        'CUB_200_2011': (0.001, 0.05), 'nabirds': (0.0002, 0.05), 'OxfordFlower': (0.001, 0.05), 'StanfordDogs': (0.00025, 0.05),
        'StanfordCars': (0.002, 0.05), 'cifar100': (0.001, 0.0001), 'caltech101': (0.006, 0.35), 'dtd': (0.0032, 0.04),
        'oxford_flowers102': (0.05, 0.11), 'oxford_iiit_pet': (0.0007, 0.8), 'svhn': (0.001, 0.005), 'sun397': (0.0017, 0.01),
        'patch_camelyon': (0.0072, 0.002), 'eurosat': (0.06, 0.001), 'resisc45': (0.01, 0.01), 'diabetic_retinopathy': (0.004, 0.0003),
        'clevr_count': (0.0033, 0.01), 'clevr_dist': (0.0018, 0.005), 'dmlab': (0.009, 0.1), 'kitti': (0.0072, 0.0001),
        'dsprites_loc': (0.003, 0.001), 'dsprites_ori': (0.01, 0.05), 'smallnorb_azi': (0.0062, 0.005), 'smallnorb_ele': (0.0011, 0.0005),
    },
    'lntune': {
        'CUB_200_2011': (0.001, 0.05), 'nabirds': (0.0002, 0.05), 'OxfordFlower': (0.001, 0.05), 'StanfordDogs': (0.00025, 0.05),
        'StanfordCars': (0.002, 0.05), 'cifar100': (0.008, 0.01), 'caltech101': (0.005, 0.01), 'dtd': (0.0032, 0.04),
        'oxford_flowers102': (0.05, 0.11), 'oxford_iiit_pet': (0.0007, 0.8), 'svhn': (0.001, 0.005), 'sun397': (0.0017, 0.01),
        'patch_camelyon': (0.0072, 0.002), 'eurosat': (0.06, 0.001), 'resisc45': (0.01, 0.01), 'diabetic_retinopathy': (0.004, 0.0003),
        'clevr_count': (0.0033, 0.01), 'clevr_dist': (0.0018, 0.005), 'dmlab': (0.009, 0.1), 'kitti': (0.0072, 0.0001),
        'dsprites_loc': (0.003, 0.001), 'dsprites_ori': (0.01, 0.05), 'smallnorb_azi': (0.0062, 0.005), 'smallnorb_ele': (0.0011, 0.0005),
    },
    'vptshallow': {
        'CUB_200_2011': (0.001, 0.05), 'nabirds': (0.0002, 0.05), 'OxfordFlower': (0.001, 0.05), 'StanfordDogs': (0.00025, 0.05),
        'StanfordCars': (0.002, 0.05), 'cifar100': (0.001, 0.0001), 'caltech101': (0.006, 0.35), 'dtd': (0.0032, 0.04),
        'oxford_flowers102': (0.05, 0.11), 'oxford_iiit_pet': (0.0007, 0.8), 'svhn': (0.001, 0.005), 'sun397': (0.0017, 0.01),
        'patch_camelyon': (0.0072, 0.002), 'eurosat': (0.06, 0.001), 'resisc45': (0.01, 0.01), 'diabetic_retinopathy': (0.004, 0.0003),
        'clevr_count': (0.0033, 0.01), 'clevr_dist': (0.0018, 0.005), 'dmlab': (0.009, 0.1), 'kitti': (0.0072, 0.0001),
        'dsprites_loc': (0.003, 0.001), 'dsprites_ori': (0.01, 0.05), 'smallnorb_azi': (0.0062, 0.005), 'smallnorb_ele': (0.0011, 0.0005),
    },
}
# run_vit_fulltuning.sh: the commands that run train_model_fulltuning.py (dtd: five of them, a sweep)
VPETL_FULLTUNING: dict[str, list[tuple[float, float]]] = {
    'cifar100': [(0.0005, 0.1)],
    'caltech101': [(0.0005, 0.005)],
    'dtd': [(0.0001, 0.5), (0.0001, 0.05), (0.0001, 0.005), (0.0001, 0.0005), (5e-05, 0.05)],
}
# ImageClassification/configs/model_lora/vtab/<task>.yaml (train_aug, labelsmoothing): read by every training script
# except train_model_fulltuning.py, whose configs/model_fulltuning/vtab/<task>.yaml hold the same two values
VPETL_VTAB_CONFIGS: dict[str, tuple[bool, float]] = {
    'caltech101': (False, 0.1), 'cifar100': (False, 0.1), 'clevr_count': (True, 0.0), 'clevr_dist': (False, 0.0),
    'diabetic_retinopathy': (True, 0.1), 'dmlab': (True, 0.0), 'dsprites_loc': (False, 0.0), 'dsprites_ori': (False, 0.0),
    'dtd': (True, 0.1), 'eurosat': (True, 0.1), 'kitti': (True, 0.1), 'oxford_flowers102': (True, 0.1),
    'oxford_iiit_pet': (True, 0.1), 'patch_camelyon': (True, 0.1), 'resisc45': (True, 0.1), 'smallnorb_azi': (False, 0.0),
    'smallnorb_ele': (False, 0.0), 'sun397': (True, 0.1), 'svhn': (True, 0.1),
}
# ImageClassification/configs/model_lora/fgvc/<dataset>.yaml (train_aug, labelsmoothing, batch_size)
VPETL_FGVC_CONFIGS: dict[str, tuple[bool, float, int]] = {
    'CUB_200_2011': (False, 0.0, 128), 'nabirds': (False, 0.0, 128), 'OxfordFlower': (False, 0.0, 128),
    'StanfordCars': (False, 0.0, 128), 'StanfordDogs': (False, 0.0, 128),
}

# OSU-MLB/PETL_Vision @ 245d262 : tune_output/default_vtab/processed_vtab/<task>/<method>/final_result.json best_tune:
# (lr, wd, *PETLV_KEYS[method]) per task
PETLV_KEYS: dict[str, tuple[str, ...]] = {
    'adaptformer': ('adapter_bottleneck', 'adapter_scaler'), 'bitfit': (), 'convpass': ('convpass_bottleneck', 'convpass_scaler', 'convpass_xavier_init'),
    'difffit': (), 'fact_tk': ('fact_dim', 'fact_scaler'), 'fact_tt': ('fact_dim', 'fact_scaler'),
    'full': (), 'linear': (), 'ln': (),
    'lora': ('lora_bottleneck',), 'repadapter': ('repadapter_bottleneck', 'repadapter_scaler'), 'ssf': (),
    'vpt_deep': ('vpt_num',), 'vpt_shallow': ('vpt_num',),
}
PETLV_BEST_TUNE: dict[str, dict[str, tuple]] = {
    'adaptformer': {
        'caltech101': (0.01, 0.0001, 32, 0.05), 'cifar': (0.001, 0.001, 16, 0.05), 'clevr_count': (0.001, 0.0001, 32, 0.1), 'clevr_dist': (0.001, 0.0001, 16, 0.2),
        'diabetic_retinopathy': (0.01, 0.001, 32, 0.05), 'dmlab': (0.001, 0.001, 32, 0.1), 'dsprites_loc': (0.01, 0.001, 32, 0.05), 'dsprites_ori': (0.01, 0.0001, 32, 0.2),
        'dtd': (0.01, 0.001, 32, 0.1), 'eurosat': (0.01, 0.001, 32, 0.2), 'kitti': (0.001, 0.0001, 32, 0.2), 'oxford_flowers102': (0.01, 0.0001, 16, 0.2),
        'oxford_iiit_pet': (0.001, 0.0001, 4, 0.05), 'patch_camelyon': (0.001, 0.0001, 16, 0.1), 'resisc45': (0.01, 0.0001, 16, 0.2), 'smallnorb_azi': (0.01, 0.0001, 16, 0.1),
        'smallnorb_ele': (0.001, 0.0001, 32, 0.1), 'sun397': (0.01, 0.001, 16, 0.1), 'svhn': (0.01, 0.0001, 32, 0.2),
    },
    'bitfit': {
        'caltech101': (0.01, 0.0001), 'cifar': (0.001, 0.0001), 'clevr_count': (0.001, 0.0001), 'clevr_dist': (0.001, 0.0001),
        'diabetic_retinopathy': (0.001, 0.001), 'dmlab': (0.01, 0.001), 'dsprites_loc': (0.001, 0.0001), 'dsprites_ori': (0.01, 0.001),
        'dtd': (0.01, 0.0001), 'eurosat': (0.01, 0.001), 'kitti': (0.01, 0.0001), 'oxford_flowers102': (0.01, 0.001),
        'oxford_iiit_pet': (0.001, 0.0001), 'patch_camelyon': (0.01, 0.0001), 'resisc45': (0.01, 0.0001), 'smallnorb_azi': (0.01, 0.0001),
        'smallnorb_ele': (0.001, 0.0001), 'sun397': (0.01, 0.0001), 'svhn': (0.01, 0.0001),
    },
    'convpass': {
        'caltech101': (0.01, 0.001, 16, 0.1, False), 'cifar': (0.01, 0.001, 8, 0.1, False), 'clevr_count': (0.001, 0.0001, 16, 0.1, False), 'clevr_dist': (0.001, 0.0001, 8, 0.1, True),
        'diabetic_retinopathy': (0.001, 0.0001, 16, 10, True), 'dmlab': (0.01, 0.0001, 16, 0.01, False), 'dsprites_loc': (0.001, 0.001, 8, 10, True), 'dsprites_ori': (0.01, 0.0001, 8, 0.01, False),
        'dtd': (0.01, 0.001, 8, 1, False), 'eurosat': (0.01, 0.0001, 8, 1, False), 'kitti': (0.001, 0.0001, 16, 100, True), 'oxford_flowers102': (0.01, 0.0001, 8, 0.1, False),
        'oxford_iiit_pet': (0.01, 0.0001, 8, 0.01, False), 'patch_camelyon': (0.01, 0.0001, 8, 0.01, False), 'resisc45': (0.001, 0.001, 16, 1, False), 'smallnorb_azi': (0.001, 0.001, 16, 100, True),
        'smallnorb_ele': (0.001, 0.0001, 16, 1, True), 'sun397': (0.01, 0.001, 16, 0.1, True), 'svhn': (0.01, 0.001, 8, 10, False),
    },
    'difffit': {
        'caltech101': (0.001, 0.0001), 'cifar': (0.001, 0.001), 'clevr_count': (0.001, 0.0001), 'clevr_dist': (0.001, 0.001),
        'diabetic_retinopathy': (0.001, 0.0001), 'dmlab': (0.01, 0.001), 'dsprites_loc': (0.01, 0.001), 'dsprites_ori': (0.01, 0.001),
        'dtd': (0.001, 0.0001), 'eurosat': (0.001, 0.001), 'kitti': (0.01, 0.0001), 'oxford_flowers102': (0.001, 0.001),
        'oxford_iiit_pet': (0.001, 0.0001), 'patch_camelyon': (0.001, 0.001), 'resisc45': (0.01, 0.0001), 'smallnorb_azi': (0.01, 0.0001),
        'smallnorb_ele': (0.001, 0.001), 'sun397': (0.001, 0.001), 'svhn': (0.01, 0.001),
    },
    'fact_tk': {
        'caltech101': (0.001, 0.001, 64, 10), 'cifar': (0.01, 0.0001, 64, 0.01), 'clevr_count': (0.001, 0.001, 64, 0.1), 'clevr_dist': (0.001, 0.0001, 64, 0.01),
        'diabetic_retinopathy': (0.001, 0.0001, 64, 10), 'dmlab': (0.01, 0.0001, 16, 1), 'dsprites_loc': (0.001, 0.001, 64, 1), 'dsprites_ori': (0.001, 0.0001, 32, 1),
        'dtd': (0.01, 0.0001, 64, 0.01), 'eurosat': (0.001, 0.0001, 64, 10), 'kitti': (0.01, 0.0001, 32, 0.01), 'oxford_flowers102': (0.01, 0.001, 32, 0.1),
        'oxford_iiit_pet': (0.01, 0.0001, 64, 0.1), 'patch_camelyon': (0.001, 0.0001, 32, 0.01), 'resisc45': (0.001, 0.001, 64, 10), 'smallnorb_azi': (0.001, 0.001, 32, 0.01),
        'smallnorb_ele': (0.001, 0.0001, 16, 100), 'sun397': (0.001, 0.0001, 16, 0.01), 'svhn': (0.001, 0.0001, 64, 100),
    },
    'fact_tt': {
        'caltech101': (0.001, 0.0001, 32, 1), 'cifar': (0.001, 0.001, 32, 0.01), 'clevr_count': (0.001, 0.0001, 32, 1), 'clevr_dist': (0.001, 0.0001, 8, 10),
        'diabetic_retinopathy': (0.001, 0.0001, 8, 0.01), 'dmlab': (0.01, 0.0001, 8, 0.1), 'dsprites_loc': (0.001, 0.0001, 16, 1), 'dsprites_ori': (0.01, 0.0001, 32, 0.1),
        'dtd': (0.01, 0.001, 32, 0.01), 'eurosat': (0.01, 0.001, 32, 0.1), 'kitti': (0.001, 0.0001, 32, 0.1), 'oxford_flowers102': (0.001, 0.001, 32, 1),
        'oxford_iiit_pet': (0.01, 0.0001, 16, 0.01), 'patch_camelyon': (0.01, 0.0001, 16, 0.1), 'resisc45': (0.001, 0.0001, 16, 10), 'smallnorb_azi': (0.001, 0.0001, 32, 1),
        'smallnorb_ele': (0.001, 0.001, 32, 10), 'sun397': (0.01, 0.001, 8, 0.1), 'svhn': (0.001, 0.0001, 32, 100),
    },
    'full': {
        'caltech101': (0.001, 0.001), 'cifar': (0.001, 0.0001), 'clevr_count': (0.001, 0.0001), 'clevr_dist': (0.001, 0.001),
        'diabetic_retinopathy': (0.01, 0.001), 'dmlab': (0.001, 0.0001), 'dsprites_loc': (0.001, 0.001), 'dsprites_ori': (0.001, 0.001),
        'dtd': (0.001, 0.0001), 'eurosat': (0.001, 0.0001), 'kitti': (0.001, 0.0001), 'oxford_flowers102': (0.001, 0.0001),
        'oxford_iiit_pet': (0.001, 0.001), 'patch_camelyon': (0.001, 0.0001), 'resisc45': (0.001, 0.0001), 'smallnorb_azi': (0.001, 0.0001),
        'smallnorb_ele': (0.001, 0.001), 'sun397': (0.001, 0.001), 'svhn': (0.001, 0.001),
    },
    'linear': {
        'caltech101': (0.001, 0.0001), 'cifar': (0.001, 0.001), 'clevr_count': (0.01, 0.0001), 'clevr_dist': (0.01, 0.0001),
        'diabetic_retinopathy': (0.01, 0.001), 'dmlab': (0.01, 0.0001), 'dsprites_loc': (0.01, 0.0001), 'dsprites_ori': (0.01, 0.001),
        'dtd': (0.001, 0.0001), 'eurosat': (0.01, 0.001), 'kitti': (0.01, 0.001), 'oxford_flowers102': (0.01, 0.0001),
        'oxford_iiit_pet': (0.01, 0.0001), 'patch_camelyon': (0.01, 0.0001), 'resisc45': (0.01, 0.001), 'smallnorb_azi': (0.01, 0.0001),
        'smallnorb_ele': (0.01, 0.001), 'sun397': (0.01, 0.0001), 'svhn': (0.01, 0.001),
    },
    'ln': {
        'caltech101': (0.001, 0.001), 'cifar': (0.001, 0.001), 'clevr_count': (0.001, 0.0001), 'clevr_dist': (0.001, 0.001),
        'diabetic_retinopathy': (0.001, 0.0001), 'dmlab': (0.01, 0.0001), 'dsprites_loc': (0.01, 0.001), 'dsprites_ori': (0.01, 0.0001),
        'dtd': (0.001, 0.0001), 'eurosat': (0.01, 0.001), 'kitti': (0.01, 0.0001), 'oxford_flowers102': (0.001, 0.001),
        'oxford_iiit_pet': (0.001, 0.0001), 'patch_camelyon': (0.001, 0.001), 'resisc45': (0.001, 0.001), 'smallnorb_azi': (0.001, 0.001),
        'smallnorb_ele': (0.001, 0.001), 'sun397': (0.001, 0.001), 'svhn': (0.01, 0.001),
    },
    'lora': {
        'caltech101': (0.001, 0.001, 32), 'cifar': (0.01, 0.0001, 1), 'clevr_count': (0.001, 0.0001, 16), 'clevr_dist': (0.001, 0.001, 16),
        'diabetic_retinopathy': (0.01, 0.001, 1), 'dmlab': (0.001, 0.001, 16), 'dsprites_loc': (0.001, 0.0001, 32), 'dsprites_ori': (0.001, 0.001, 8),
        'dtd': (0.001, 0.0001, 1), 'eurosat': (0.001, 0.0001, 32), 'kitti': (0.001, 0.001, 8), 'oxford_flowers102': (0.001, 0.001, 8),
        'oxford_iiit_pet': (0.01, 0.0001, 1), 'patch_camelyon': (0.001, 0.001, 8), 'resisc45': (0.001, 0.0001, 32), 'smallnorb_azi': (0.001, 0.001, 8),
        'smallnorb_ele': (0.001, 0.001, 32), 'sun397': (0.01, 0.0001, 1), 'svhn': (0.001, 0.0001, 32),
    },
    'repadapter': {
        'caltech101': (0.001, 0.001, 32, 0.5), 'cifar': (0.001, 0.001, 8, 0.1), 'clevr_count': (0.001, 0.001, 32, 0.1), 'clevr_dist': (0.001, 0.001, 8, 0.5),
        'diabetic_retinopathy': (0.001, 0.0001, 16, 1), 'dmlab': (0.001, 0.001, 16, 1), 'dsprites_loc': (0.001, 0.001, 8, 10), 'dsprites_ori': (0.01, 0.0001, 32, 0.1),
        'dtd': (0.001, 0.0001, 16, 1), 'eurosat': (0.01, 0.001, 8, 0.1), 'kitti': (0.001, 0.001, 16, 5), 'oxford_flowers102': (0.001, 0.0001, 32, 1),
        'oxford_iiit_pet': (0.001, 0.0001, 8, 0.5), 'patch_camelyon': (0.001, 0.001, 32, 0.1), 'resisc45': (0.01, 0.001, 8, 0.1), 'smallnorb_azi': (0.001, 0.0001, 16, 5),
        'smallnorb_ele': (0.001, 0.0001, 8, 1), 'sun397': (0.001, 0.001, 16, 0.5), 'svhn': (0.001, 0.0001, 32, 5),
    },
    'ssf': {
        'caltech101': (0.001, 0.001), 'cifar': (0.001, 0.001), 'clevr_count': (0.001, 0.001), 'clevr_dist': (0.001, 0.0001),
        'diabetic_retinopathy': (0.01, 0.001), 'dmlab': (0.01, 0.001), 'dsprites_loc': (0.01, 0.0001), 'dsprites_ori': (0.001, 0.001),
        'dtd': (0.01, 0.001), 'eurosat': (0.01, 0.001), 'kitti': (0.01, 0.001), 'oxford_flowers102': (0.001, 0.0001),
        'oxford_iiit_pet': (0.001, 0.001), 'patch_camelyon': (0.001, 0.0001), 'resisc45': (0.001, 0.001), 'smallnorb_azi': (0.01, 0.0001),
        'smallnorb_ele': (0.001, 0.001), 'sun397': (0.001, 0.001), 'svhn': (0.01, 0.0001),
    },
    'vpt_deep': {
        'caltech101': (0.01, 0.0001, 50), 'cifar': (0.001, 0.001, 5), 'clevr_count': (0.001, 0.001, 50), 'clevr_dist': (0.001, 0.001, 100),
        'diabetic_retinopathy': (0.01, 0.001, 100), 'dmlab': (0.001, 0.001, 5), 'dsprites_loc': (0.01, 0.0001, 100), 'dsprites_ori': (0.001, 0.0001, 100),
        'dtd': (0.01, 0.0001, 100), 'eurosat': (0.01, 0.0001, 50), 'kitti': (0.01, 0.001, 50), 'oxford_flowers102': (0.01, 0.001, 10),
        'oxford_iiit_pet': (0.01, 0.0001, 5), 'patch_camelyon': (0.01, 0.001, 5), 'resisc45': (0.01, 0.0001, 5), 'smallnorb_azi': (0.001, 0.001, 50),
        'smallnorb_ele': (0.01, 0.0001, 50), 'sun397': (0.01, 0.001, 10), 'svhn': (0.001, 0.001, 50),
    },
    'vpt_shallow': {
        'caltech101': (0.01, 0.0001, 5), 'cifar': (0.001, 0.001, 100), 'clevr_count': (0.01, 0.001, 10), 'clevr_dist': (0.01, 0.001, 200),
        'diabetic_retinopathy': (0.01, 0.0001, 5), 'dmlab': (0.01, 0.001, 200), 'dsprites_loc': (0.01, 0.001, 100), 'dsprites_ori': (0.01, 0.001, 10),
        'dtd': (0.001, 0.001, 200), 'eurosat': (0.01, 0.0001, 100), 'kitti': (0.01, 0.001, 5), 'oxford_flowers102': (0.01, 0.0001, 5),
        'oxford_iiit_pet': (0.01, 0.001, 200), 'patch_camelyon': (0.01, 0.0001, 100), 'resisc45': (0.01, 0.001, 200), 'smallnorb_azi': (0.001, 0.001, 50),
        'smallnorb_ele': (0.001, 0.0001, 200), 'sun397': (0.01, 0.001, 10), 'svhn': (0.01, 0.001, 200),
    },
}

# showlab/SCT @ 384cecb : run_model_sct.sh, (--lr, --wd) of each command, keyed by its --dataset names
SCT_SCRIPT: dict[str, tuple[float, float]] = {
    'cifar100': (0.013, 1.0), 'caltech101': (0.006, 0.35), 'dtd': (0.0032, 0.04), 'oxford_flowers102': (0.05, 0.11),
    'oxford_iiit_pet': (0.0007, 0.8), 'svhn': (0.075, 0.03), 'sun397': (0.0017, 0.01), 'patch_camelyon': (0.0072, 0.002),
    'eurosat': (0.06, 0.001), 'resisc45': (0.01, 0.01), 'diabetic_retinopathy': (0.004, 0.0003), 'clevr_count': (0.0033, 0.01),
    'clevr_dist': (0.0018, 0.005), 'dmlab': (0.009, 0.1), 'kitti': (0.0072, 0.0001), 'dsprites_loc': (0.003, 0.001),
    'dsprites_ori': (0.01, 0.05), 'smallnorb_azi': (0.0062, 0.005), 'smallnorb_ele': (0.0011, 0.0005),
}
# showlab/SCT @ 384cecb : configs/model_sct/vtab/<task>.yaml (train_aug, labelsmoothing, batch_size); smallnorb_ele.yaml
# has no train_aug key: the script's default False
SCT_CONFIGS: dict[str, tuple[bool, float, int]] = {
    'caltech101': (False, 0.1, 64), 'cifar100': (False, 0.1, 64), 'clevr_count': (True, 0.0, 64), 'clevr_dist': (True, 0.0, 64),
    'diabetic_retinopathy': (True, 0.1, 64), 'dmlab': (True, 0.0, 64), 'dsprites_loc': (False, 0.0, 64), 'dsprites_ori': (False, 0.0, 64),
    'dtd': (True, 0.1, 64), 'eurosat': (True, 0.1, 64), 'kitti': (True, 0.1, 64), 'oxford_flowers102': (False, 0.1, 64),
    'oxford_iiit_pet': (True, 0.1, 64), 'patch_camelyon': (True, 0.1, 64), 'resisc45': (True, 0.1, 64), 'smallnorb_azi': (False, 0.0, 64),
    'smallnorb_ele': (False, 0.0, 64), 'sun397': (False, 0.1, 64), 'svhn': (True, 0.1, 64),
}

# FightingFighting/GPS @ 72e0c31 : train_scripts/vit/vtab/<folder>/train_gps.sh (bz, lr, --drop-path, --times_para),
# keyed by the folder names
GPS_VTAB: dict[str, tuple[int, float, float, int]] = {
    'caltech101': (16, 0.002, 0.0, 1), 'cifar_100': (32, 0.01, 0.0, 1), 'clevr_count': (16, 0.0003, 0.1, 1),
    'clevr_dist': (16, 0.002, 0.1, 1), 'diabetic_retinopathy': (32, 0.002, 0.2, 1), 'dmlab': (16, 0.0015, 0.1, 1),
    'dsprites_loc': (32, 0.007, 0.0, 1), 'dsprites_ori': (16, 0.0005, 0.2, 1), 'dtd': (16, 0.002, 0.0, 1),
    'eurosat': (16, 0.002, 0.0, 1), 'flowers102': (16, 0.002, 0.0, 1), 'kitti': (16, 0.001, 0.0, 1),
    'patch_camelyon': (32, 0.004, 0.0, 2), 'pets': (32, 0.003, 0.0, 1), 'resisc45': (16, 0.0015, 0.1, 1),
    'smallnorb_azi': (32, 0.003, 0.1, 1), 'smallnorb_ele': (32, 0.0003, 0.2, 1), 'sun397': (16, 0.0025, 0.0, 1),
    'svhn': (32, 0.005, 0.0, 1),
}
# FightingFighting/GPS @ 72e0c31 : train_scripts/vit/fgvc/<folder>/train_gps.sh (bz, lr, --drop-path, --times_para,
# --model-ema-decay)
GPS_FGVC: dict[str, tuple[int, float, float, int, float]] = {
    'cub_2011': (32, 0.003, 0.0, 2, 0.9998), 'nabirds': (32, 0.0001, 0.1, 20, 0.9998), 'oxford_flowers': (32, 0.001, 0.1, 1, 0.99),
    'stanford_cars': (32, 0.0005, 0.0, 15, 0.9998), 'stanford_dogs': (64, 0.0001, 0.0, 1, 0.9998),
}

# heekhero/DTL @ bf6c51e : train_scripts/vit/vtab/<folder>/train_dtl.sh (--batch_size, --weight_decay, --lr,
# --drop_path), keyed by the folder names
DTL_VTAB: dict[str, tuple[int, float, float, float]] = {
    'caltech101': (32, 0.05, 0.001, 0.0), 'cifar_100': (32, 0.05, 0.0003, 0.1), 'clevr_count': (32, 0.05, 0.001, 0.2),
    'clevr_dist': (32, 0.05, 0.0005, 0.2), 'diabetic_retinopathy': (32, 0.05, 0.0001, 0.1), 'dmlab': (32, 0.05, 0.0008, 0.2),
    'dsprites_loc': (32, 0.05, 0.01, 0.0), 'dsprites_ori': (32, 0.05, 0.008, 0.0), 'dtd': (32, 0.05, 0.0003, 0.1),
    'eurosat': (32, 0.05, 0.008, 0.0), 'flowers102': (32, 0.05, 0.008, 0.2), 'kitti': (32, 0.05, 0.008, 0.1),
    'patch_camelyon': (32, 0.05, 0.008, 0.1), 'pets': (32, 0.05, 0.0003, 0.1), 'resisc45': (32, 0.05, 0.008, 0.1),
    'smallnorb_azi': (32, 0.05, 0.003, 0.2), 'smallnorb_ele': (32, 0.05, 0.001, 0.2), 'sun397': (32, 0.05, 0.0005, 0.1),
    'svhn': (32, 0.05, 0.008, 0.2),
}

# AFeng-x/HST @ ee89571 : train_scripts/vit/vtab/<folder>/train_s4.sh (--nproc_per_node, --batch-size, --lr,
# --weight-decay, --drop-path of the command), keyed by the folder names
HST_VTAB: dict[str, tuple[int, int, float, float, float]] = {
    'caltech101': (2, 32, 0.001, 0.0005, 0.1), 'cifar_100': (2, 32, 0.01, 0.0005, 0.0), 'clevr_count': (2, 32, 0.001, 0.0005, 0.1),
    'clevr_dist': (2, 32, 0.005, 0.0005, 0.1), 'diabetic_retinopathy': (2, 32, 0.001, 5e-05, 0.1), 'dmlab': (2, 32, 0.005, 0.0005, 0.1),
    'dsprites_loc': (2, 32, 0.005, 0.0005, 0.1), 'dsprites_ori': (2, 32, 0.001, 0.0005, 0.1), 'dtd': (2, 32, 0.01, 0.0005, 0.0),
    'eurosat': (2, 32, 0.001, 0.0005, 0.1), 'flowers102': (2, 32, 0.001, 5e-05, 0.0), 'kitti': (2, 32, 0.005, 0.05, 0.1),
    'patch_camelyon': (2, 32, 0.005, 0.0005, 0.1), 'pets': (2, 32, 0.01, 0.0005, 0.0), 'resisc45': (2, 32, 0.005, 0.0005, 0.0),
    'smallnorb_azi': (2, 32, 0.001, 0.0005, 0.1), 'smallnorb_ele': (2, 32, 0.001, 0.05, 0.2), 'sun397': (2, 32, 0.01, 5e-05, 0.0),
    'svhn': (2, 32, 0.01, 5e-05, 0.1),
}
# AFeng-x/HST @ ee89571 : train_scripts/vit/fgvc/<folder>/train_img21k.sh (the same five flags)
HST_FGVC: dict[str, tuple[int, int, float, float, float]] = {
    'cub_2011': (4, 32, 0.001, 0.05, 0.0), 'nabirds': (4, 32, 0.0005, 0.05, 0.0), 'oxford_flowers': (4, 32, 0.001, 5e-05, 0.0),
    'stanford_cars': (4, 32, 0.005, 0.05, 0.0), 'stanford_dogs': (4, 32, 0.005, 0.05, 0.0),
}

# extremebird/Hydra @ 4138457 : vtab1k/configs/hydra_both/<task>.yaml (lr, wd, scale, dropout, batchsize), keyed by name
HYDRA_CONFIGS: dict[str, tuple[float, float, float, float, int]] = {
    'caltech101': (0.001, 0.0001, 4, 0.1, 32), 'cifar': (0.0005, 0.0001, 0.1, 0.2, 16), 'clevr_count': (0.0005, 0.0001, 1.5, 0.2, 64),
    'clevr_dist': (0.0005, 0.0001, 0.1, 0, 16), 'diabetic_retinopathy': (0.0005, 0.0001, 4.5, 0.2, 64), 'dmlab': (0.001, 0.0001, 4.5, 0.2, 64),
    'dsprites_loc': (0.001, 0.0001, 4.5, 0.2, 16), 'dsprites_ori': (0.001, 0.0001, 2.5, 0.2, 64), 'dtd': (0.001, 0.0001, 0.1, 0.2, 32),
    'eurosat': (0.0005, 0.0001, 0.1, 0.2, 64), 'kitti': (0.0005, 0.0001, 4.5, 0.2, 64), 'oxford_flowers102': (0.005, 0.0001, 0.1, 0, 64),
    'oxford_iiit_pet': (0.001, 0.0001, 0.1, 0, 32), 'patch_camelyon': (0.005, 0.0001, 0.1, 0.2, 64), 'resisc45': (0.005, 0.0001, 0.1, 0.2, 64),
    'smallnorb_azi': (0.005, 1e-05, 3, 0.2, 64), 'smallnorb_ele': (0.0005, 0.0001, 1, 0.2, 64), 'sun397': (0.001, 0.0001, 0.1, 0.2, 64),
    'svhn': (0.001, 0.0001, 3, 0, 16),
}

# visinf/adapter_plus @ 191c4ab : conf/experiment/vtab/adapter_plus_dim1-32.yaml dataset_dim ("Adapter+ opt." r per
# task), keyed by adapter_plus's dataset names
ADAPTER_PLUS_DIMS_VTAB: dict[str, int] = {
    'cifar100': 1, 'caltech101': 4, 'dtd': 2, 'flowers102': 1, 'pet': 8, 'svhn': 16, 'sun397': 1,
    'camelyon': 16, 'eurosat': 2, 'resisc45': 32, 'retinopathy': 32,
    'clevr_count': 4, 'clevr_distance': 8, 'dmlab': 8, 'kitti': 8, 'dsprites_position': 32, 'dsprites_orientation': 4,
    'smallnorb_azimuth': 32, 'smallnorb_elevation': 8,
}
# visinf/adapter_plus @ 191c4ab : conf/experiment/fgvc/adapter_plus_dim1-32.yaml dataset_dim
ADAPTER_PLUS_DIMS_FGVC: dict[str, int] = {
    'nabirds': 2, 'stanfordcars': 32, 'stanforddogs': 1, 'cub': 2, 'oxfordflower': 1,
}
