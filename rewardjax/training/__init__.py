"""Trainers, and the pieces they share.

One file per piece; the file name says which:

  launch.py      config.trainer → its trainer; the body of experiments/train.py
  loop.py        the trainer shell: sharded init, update step, restore/save, run loop, export
  rl.py          the RL loop: rollout → rewards → advantages → updates
  rl_loss.py     the RL loss and advantage step
  rl_rewards.py  the RL reward step: task checker, reward functions and reward models mixed
  offline.py     the offline loop over one objective kind
  kinds/         the offline objective kinds: sft, dpo, rm, prm, implicit_prm (`KINDS`)
  quickstart.py  SFT then GRPO from scratch, evaluated before and after
  step.py        TrainState and the update-step factory
  checkpoint.py  Orbax checkpoints that resume exactly, checksummed per array
  config_checks.py  value ranges of a config, checked before anything loads
  memory_plan.py the update step compiled on abstract shapes: bytes per device
  policy.py      policy and tokenizer from config;  optim.py  optimizer from config
  prompts.py     where RL prompts come from;  rollout.py  sample, decode, grade
  writers.py     run outputs: config.json, metrics.jsonl, TensorBoard, samples
  faults.py      fault injection for resume tests
"""
