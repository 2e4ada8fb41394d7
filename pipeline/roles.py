"""Which model plays which part in the comparison: built once from params, passed to every analysis.

The comparison has six parts: the dense baseline; the teacher that is distilled (`distill.teacher`); the
task-MoE whose sub-networks are extracted (`extract.source`); the extracted sub-networks; the distilled
student; and the student's equal-steps control (dense trained as long, without the teacher). compare
writes the roles into compare.json (`setup.roles`), and curves, benchmark and the report read them from
there or from params, so a report never calls a model the teacher that was not distilled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

STUDENT = "student"  # the distilled dense model (pipeline.distill.train_student): models/student
CONTROL = "dense_long"  # the student's equal-steps control (pipeline.distill.train_control): models/dense_long
SUB = "task_moe_sub"  # the extract stage's output folder, models/task_moe_sub


@dataclass(frozen=True)
class Roles:
    baseline: str = "dense"
    teacher: str = "token_moe"
    task_moe: str = "task_moe"
    sub: str = SUB
    student: str = STUDENT
    control: str = CONTROL

    @classmethod
    def from_params(cls, params) -> "Roles":
        return cls(teacher=params.distill.teacher, task_moe=params.extract.source)

    @classmethod
    def from_dict(cls, data: Optional[dict]) -> "Roles":
        """From compare.json's `setup.roles`; files written before roles existed get the defaults."""
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def references(self) -> dict[str, str]:
        """The denominators of a fraction of gains: label -> model (the paper's is the task-MoE's)."""
        return {"teacher": self.teacher, "task_moe": self.task_moe}

    @property
    def approaches(self) -> tuple[str, str]:
        """The two ways to serve cheaply that the comparison sets side by side."""
        return (self.student, self.sub)

    @property
    def controls(self) -> dict[str, str]:
        """approach -> the model trained as long as it without what the approach adds."""
        return {self.student: self.control}

    @property
    def trained(self) -> tuple[str, ...]:
        """The models whose learning curves are compared (the train stages' baseline and the two MoEs)."""
        return tuple(dict.fromkeys((self.baseline, self.teacher, self.task_moe)))

    def describe(self, name: str) -> str:
        """What `name` is in this comparison, in words."""
        parts = {self.baseline: "dense baseline", self.teacher: "the distillation teacher",
                 self.task_moe: "task-level MoE (its sub-networks are extracted)",
                 self.sub: f"sub-networks extracted from {self.task_moe}",
                 self.student: f"dense student distilled from {self.teacher}",
                 self.control: "dense trained as long as the student, without the teacher"}
        if self.teacher == self.task_moe and name == self.teacher:
            return "task-level MoE: the distillation teacher, and its sub-networks are extracted"
        return parts.get(name, name)
