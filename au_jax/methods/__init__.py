"""Training procedures, one module per paper (found by config.method).

Each module defines `loss_fn(outputs, batch, config) -> (loss, scalars)`;
see DESIGN.md, "Many methods, one trainer".
"""
