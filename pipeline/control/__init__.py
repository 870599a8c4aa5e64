"""The model-control topic: how scorers learn which model serves traffic."""

from pipeline.control.announce import ControlAnnounceError, announce, control_record

__all__ = ["ControlAnnounceError", "announce", "control_record"]
