"""Supervised training of a student on the on-disk aggregate: losses, normalization, epochs.

Losses on the teacher's labels (``dagger.loss``):
  ``mse``       mean squared error to the teacher's mean action (the DAgger default);
  ``nll``       Gaussian negative log-likelihood of the teacher's action under the student's mean and
                its learned std (the student also learns how sure to be);
  ``sigma_l2``  squared error weighted by 1 / sigma_teacher^2, normalized by the mean weight: dimensions
                the teacher is sure about count more than those it leaves to exploration noise.
plus, when configured, ``aux_weight`` times the MSE of the aux head on standardised privileged columns.
The optimizer is created fresh for each iteration, so a checkpoint of the weights is the whole
training state and a resumed run continues exactly. With ``lr_schedule: cosine`` (the default) the
learning rate falls from ``lr`` to 0 over each iteration's gradient steps: the checkpoint an
iteration leaves is a settled model, not a snapshot of weights still moving at full step size,
which made student success swing by tens of points from one iteration to the next.
"""
from __future__ import annotations

import numpy as np
import torch

from robots_ts.policies.distill.dataset import ChunkDataset
from robots_ts.policies.distill.config import StudentConfig
from robots_ts.policies.students.networks import Student, augment


def depth_statistics(model: Student, dataset: ChunkDataset, records: list[dict]) -> dict[str, list]:
    """Per-pixel mean depth image and the std around it, one chunk in memory at a time."""
    total = total_sq = None
    count = 0
    for rec in records:
        chunk = dataset.load(rec)
        if chunk is None:
            continue
        d = np.asarray(chunk["depth"])
        if model.cfg.depth_fill > 0:     # the images as the CNN reads them, holes filled
            with torch.no_grad():
                img = torch.as_tensor(d.reshape(-1, 1, *d.shape[-2:]), dtype=torch.float32)
                d = model.read_depth(img).numpy().astype(np.float64)
        else:
            d = np.asarray(d, dtype=np.float64)
            d = np.where(np.isfinite(d) & (d > 0), d, model.far)   # no data reads far, as in Student.read_depth
            d = np.clip(d, model.near, model.far)
        d = d.reshape(-1, *d.shape[-2:])
        total = d.sum(0) if total is None else total + d.sum(0)
        total_sq = np.square(d).sum(0) if total_sq is None else total_sq + np.square(d).sum(0)
        count += len(d)
    if not count:
        raise ValueError("no readable depth data to compute the depth normalization from")
    mean = total / count
    std = float(np.sqrt(max(np.mean(total_sq / count - mean ** 2), 1e-8)))
    return {"depth_mean": mean.tolist(), "depth_std": [std]}


def update_normalization(model: Student, dataset: ChunkDataset, records: list[dict], fit_depth: bool) -> None:
    """Standardise proprio, point coordinates and the aux targets with statistics of the data trained on.

    The depth image normalization is fitted once (``fit_depth``, on the first iteration's data) and
    then kept: the background it removes does not change, and a fixed input transform keeps the
    features of the warm-started CNN meaningful from one iteration to the next.
    """
    norm = {}
    if fit_depth and model.encoder_group == "depth" and model.cfg.depth_norm == "pixel":
        norm.update(depth_statistics(model, dataset, records))
    for key in ("proprio", "points"):
        stats = dataset.stats(records, key)
        if stats is not None and (key == "proprio" or model.encoder_group == key):
            norm[f"{key}_mean"], norm[f"{key}_std"] = stats[0].tolist(), stats[1].tolist()
    if model.aux_dim:
        priv = dataset.stats(records, "privileged")
        if priv is None:
            raise ValueError("the aux head predicts privileged columns, but the dataset has no 'privileged' "
                             "group (the teacher does not read it)")
        idx = list(model.cfg.aux_indices)
        if max(idx) >= len(priv[0]):
            raise ValueError(f"student.aux_indices {idx} out of range: the privileged group has {len(priv[0])} "
                             "columns")
        norm["aux_mean"], norm["aux_std"] = priv[0][idx].tolist(), priv[1][idx].tolist()
    model.set_normalization(norm)


def _masked_mean(per_step: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)


def loss_terms(model: Student, batch: dict[str, torch.Tensor], cfg: StudentConfig,
               gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    group = model.encoder_group
    proprio, sensor = augment(batch["proprio"], batch[group], group, cfg.augment, gen, model.proprio_std,
                              model.far)
    # task and history join proprio as stored: no augmentation (the controller knows both exactly).
    mean, aux, _ = model(proprio, sensor, first=batch["first"], **{g: batch[g] for g in model.extra_groups})
    target, mask = batch["action"], batch["mask"]
    sq = torch.square(mean - target)
    kind = cfg.dagger.loss
    if kind == "mse":
        action_loss = _masked_mean(sq.mean(-1), mask)
    elif kind == "nll":
        log_std = model.log_std.expand_as(mean)
        nll = 0.5 * sq * torch.exp(-2.0 * log_std) + log_std
        action_loss = _masked_mean(nll.mean(-1), mask)
    else:
        w = 1.0 / torch.square(batch["std"].clamp_min(1e-3))
        action_loss = (mask[..., None] * w * sq).sum() / (mask[..., None] * w).sum().clamp_min(1e-8)
    loss = action_loss
    parts = {"action_loss": action_loss.item(), "action_mse": _masked_mean(sq.detach().mean(-1), mask).item()}
    if aux is not None:
        idx = list(model.cfg.aux_indices)
        aux_target = (batch["privileged"][..., idx] - model.aux_mean) / model.aux_std
        aux_loss = _masked_mean(torch.square(aux - aux_target).mean(-1), mask)
        loss = loss + model.cfg.aux_weight * aux_loss
        parts["aux_loss"] = aux_loss.item()
    parts["loss"] = loss.item()
    return loss, parts


def train_epochs(model: Student, dataset: ChunkDataset, records: list[dict], cfg: StudentConfig,
                 epochs: int, seed: int, fit_depth: bool = False, capped: bool = True) -> dict[str, float]:
    """``epochs`` passes over ``records``, stopped early after ``dagger.train_samples`` samples when
    that is set and ``capped``; returns the last pass's mean losses, its batch count and the samples
    trained on."""
    d = cfg.dagger
    update_normalization(model, dataset, records, fit_depth)
    opt = torch.optim.Adam(model.parameters(), lr=d.lr, weight_decay=d.weight_decay)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    keys = (*model.obs_groups, "action")
    if d.loss == "sigma_l2":
        keys += ("std",)
    if model.aux_dim:
        keys += ("privileged",)
    seq_len = d.seq_len if model.recurrent else 0
    # batch_size counts env steps: a recurrent batch holds batch_size / seq_len windows, so a gradient
    # step sees as many samples whether or not the student is recurrent.
    per_batch = max(1, d.batch_size // seq_len) if seq_len else d.batch_size
    device = next(model.parameters()).device
    model.train()
    sums: dict[str, float] = {}
    batches = seen = 0
    cap = (d.train_samples if capped else 0) or float("inf")
    # Gradient steps this call will take (the last batch of a chunk group may be short: an estimate).
    planned = max(1, int(min(epochs * dataset.num_samples(records), cap) // d.batch_size))
    sched = None
    if d.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1.0 + np.cos(np.pi * min(step, planned) / planned)))
    for _ in range(epochs):
        sums, batches = {}, 0
        for batch in dataset.batches(records, per_batch, rng, d.chunks_in_memory, keys, seq_len,
                                     d.success_only):
            missing = [k for k in keys if k not in batch]
            if missing:
                raise ValueError(f"dataset chunks lack {missing} needed by loss {d.loss!r} / the aux head")
            t = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
            t["mask"] = t["mask"].float()
            loss, parts = loss_terms(model, t, cfg, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if d.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), d.max_grad_norm)
            opt.step()
            if sched is not None:
                sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            batches += 1
            seen += int(batch["mask"].sum())
            if seen >= cap:
                break
        if seen >= cap:
            break
    model.eval()
    out = {f"train_{k}": v / max(1, batches) for k, v in sums.items()}
    out["train_batches"] = batches
    out["train_samples"] = seen
    return out
