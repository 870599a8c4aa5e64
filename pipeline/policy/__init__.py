"""The decision policy: from fraud scores to approve / review / decline."""

from pipeline.policy.decision import ACTIONS, APPROVE, DECLINE, REVIEW, DecisionPolicy

__all__ = ["ACTIONS", "APPROVE", "DECLINE", "REVIEW", "DecisionPolicy"]
