"""Finding CAM target layers in models that do not name them."""
from __future__ import annotations

import torch


def last_spatial_layer(model: torch.nn.Module, input_size=(224, 224), in_chans: int = 3,
                       call=None) -> torch.nn.Module:
    """The outermost module producing the last 4-D feature map (spatial size > 1) of a forward pass.

    Runs one dummy forward with hooks on every module. ``call(model, x)`` overrides how the model is
    called (transformers models take ``pixel_values``).
    """
    records: list[tuple[int, str, torch.nn.Module, torch.Tensor]] = []
    handles = []
    for depth_name, module in model.named_modules():
        if module is model:
            continue

        def hook(mod, inp, out, name=depth_name):
            t = out[0] if isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]) else out
            if torch.is_tensor(t) and t.ndim == 4 and t.shape[-1] > 1 and t.shape[-2] > 1:
                records.append((len(records), name, mod, t))

        handles.append(module.register_forward_hook(hook))
    try:
        x = torch.zeros(1, in_chans, *input_size, device=next(model.parameters()).device)
        with torch.no_grad():
            (call or (lambda m, t: m(t)))(model, x)
    finally:
        for h in handles:
            h.remove()
    if not records:
        raise ValueError("the model produces no spatial feature map; give its target layer explicitly")
    last = records[-1][3]
    same = [r for r in records if r[3].data_ptr() == last.data_ptr() and r[3].shape == last.shape]
    # shortest dotted name = outermost module returning that tensor (e.g. 'layer4' over 'layer4.2.relu')
    return min(same, key=lambda r: (r[1].count("."), r[0]))[2]
