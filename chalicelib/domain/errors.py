"""Domain layer: the typed errors that services raise and the API layer maps to answers."""
from __future__ import annotations

from enum import StrEnum


class EsdeployError(Exception):
    """Base of every error esdeploy raises on purpose."""


class InvalidRequestError(EsdeployError):
    """The caller sent something we cannot accept; `field` names what is wrong."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class AnswerTooLargeError(InvalidRequestError):
    """The answer to an embedding request would pass the 6 MB a synchronous answer may carry: the
    caller must send fewer texts at a time, `texts_that_fit` of them (a 413, naming `inputs`)."""

    def __init__(self, texts: int, dimension: int, estimate_bytes: int, texts_that_fit: int) -> None:
        most = (
            f"send at most {texts_that_fit} texts per request"
            if texts_that_fit
            else "not even one vector of this model fits one answer"
        )
        super().__init__(
            f"{texts} texts would make an answer of about {estimate_bytes / 1_048_576:.1f} MB with this model's "
            f"{dimension}-dimensional vectors, over the 6 MB a SageMaker real-time endpoint and a synchronous "
            f"Lambda answer at most: {most} (esdeploy's embedder() splits its batches so)",
            field="inputs",
        )
        self.texts_that_fit = texts_that_fit


class TaskNotFoundError(EsdeployError):
    """No task (or no task of that model) exists. The texts are the seed's: its clients match on them."""

    BY_ID = {
        "deploy": "Deployment task with ID `{}` is not found",
        "delete": "Deletion task with ID `{}` is not found",
    }
    BY_MODEL = {
        "deploy": "Deployment task for model with ID `{}` is not found",
        "delete": "Deletion task for model with ID `{}` is not found",
    }

    @classmethod
    def by_id(cls, kind: str, task_id: str) -> TaskNotFoundError:
        return cls(cls.BY_ID[kind].format(task_id))

    @classmethod
    def by_model(cls, kind: str, embedding_model_id: str) -> TaskNotFoundError:
        return cls(cls.BY_MODEL[kind].format(embedding_model_id))


class ModelNotFoundError(EsdeployError):
    """The model has no alias: nothing is deployed under that id."""

    @classmethod
    def not_deployed(cls, embedding_model_id: str) -> ModelNotFoundError:
        return cls(f"Model `{embedding_model_id}` is not deployed")

    @classmethod
    def only_a_candidate(cls, embedding_model_id: str, task_id: str) -> ModelNotFoundError:
        """Nothing is live yet, but a first deploy's candidate awaits promotion."""
        return cls(
            f"Model `{embedding_model_id}` has no live variant yet: the candidate of its first deploy, task "
            f'`{task_id}`, awaits promotion (it answers with "target": "candidate"; promote the task to make it live)'
        )


class IdempotencyConflictError(EsdeployError):
    """A client task id was reused with a different request body."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"Task ID `{task_id}` was already used with a different request; "
            "use a new id or replay the original body"
        )
        self.task_id = task_id


class ModelBusyError(EsdeployError):
    """Another deploy or delete of the same model is still pending or processing."""

    def __init__(
        self,
        embedding_model_id: str,
        active_task_id: str,
        active_kind: str,
        awaiting_promotion: bool = False,
        baking_until: str | None = None,
    ) -> None:
        if awaiting_promotion:
            advice = f"its candidate awaits promotion: promote it (POST /deploy/{active_task_id}/promote) or cancel it"
        elif baking_until:
            advice = (
                f"it is baking (its green is live, the previous variant kept for a rollback) until {baking_until}: "
                "wait for the bake to end, or cancel it (a cancel during the bake rolls back)"
            )
        else:
            advice = "wait for it to finish or cancel it"
        super().__init__(f"Model `{embedding_model_id}` has an active {active_kind} task `{active_task_id}`; {advice}")
        self.embedding_model_id = embedding_model_id
        self.active_task_id = active_task_id
        self.active_kind = active_kind


class InvalidStateError(EsdeployError):
    """The operation does not apply to the task or model in its current state."""


class ConcurrentUpdateError(EsdeployError):
    """Someone else changed the item since we read it (optimistic locking lost)."""


class AliasConflictError(ConcurrentUpdateError):
    """The alias changed since we read it. Unlike a conflict on a task, this does not mean that
    someone else owns the next step: read the alias again and decide again."""


class TaskAlreadyExistsError(EsdeployError):
    """A task with this id is already stored."""


class DispatchError(EsdeployError):
    """A message could not be sent to a queue; the task was not started."""


class RetryableError(EsdeployError):
    """A transient fault (throttling, 5xx, timeout): raise so SQS redelivers the message."""


class TerminalHostingError(EsdeployError):
    """The hosting platform refused for good (quota, bad artifact, validation)."""


class QuotaKind(StrEnum):
    """What a SageMaker quota counts, which decides what helps when it is reached."""

    INSTANCE_TYPE = "instance_type"  # '<type> for endpoint usage': instances of one type in endpoints
    INSTANCES = "instances"  # instances of every type across the account's active endpoints
    RESOURCES = "resources"  # how many models, endpoint configurations or endpoints the account may have


SERVICE_QUOTAS_URL = "https://console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas"


class QuotaExceededError(TerminalHostingError):
    """The platform has no quota left for what the deploy asked (SageMaker's ResourceLimitExceeded):
    no retry helps until someone raises the quota, so the task ends `refused`, naming it.
    `quota` is the quota's name as the platform said it, `kind` what it counts (both None when
    its message named none), `said` the platform's own words."""

    def __init__(
        self, message: str, said: str, quota: str | None = None, kind: QuotaKind | None = None
    ) -> None:
        super().__init__(message)
        self.said = said
        self.quota = quota
        self.kind = kind

    def remedy(self) -> str:
        return quota_remedy(self.quota, self.kind)


def quota_remedy(quota: str | None, kind: QuotaKind | None) -> str:
    """What a person can do about the quota that was reached: what helps depends on what it counts."""
    where = f"the Service Quotas console ({SERVICE_QUOTAS_URL}" + (f", search '{quota}')" if quota else ")")
    if kind is QuotaKind.INSTANCE_TYPE:
        return (
            f"Request more in {where}, or delete unused endpoints, or deploy with fewer instances "
            "(config.initial_instance_count) or another instance type"
        )
    if kind is QuotaKind.INSTANCES:
        return (
            f"Request more in {where}, or delete unused endpoints, or deploy with fewer instances "
            "(config.initial_instance_count); another instance type does not help, this quota counts every type"
        )
    if kind is QuotaKind.RESOURCES:
        return (
            f"Request more in {where}, or delete the SageMaker models, endpoint configurations or endpoints "
            "this account no longer uses in this region; fewer instances or another instance type do not help"
        )
    return (
        f"SageMaker's words name the quota: request more in {where}, or delete unused endpoints, "
        "or deploy with fewer instances (config.initial_instance_count) or another instance type"
    )


class InvocationError(EsdeployError):
    """An endpoint did not answer an embedding request properly."""


class InvocationTimeoutError(InvocationError):
    """An endpoint did not answer within the time the caller allowed."""

    def __init__(self, endpoint: str, seconds: float) -> None:
        super().__init__(f"endpoint {endpoint} did not answer in {seconds:g} s")
        self.endpoint = endpoint
        self.seconds = seconds


class EndpointRefusedError(InvocationError):
    """The endpoint refused the request as the caller's mistake (its own 4xx): the caller must fix
    the request, so it is passed on as a 4xx with the endpoint's words, never as our failure."""

    def __init__(self, endpoint: str, status: int, message: str) -> None:
        super().__init__(f"endpoint {endpoint} refused the request ({status}): {message}")
        self.endpoint = endpoint
        self.status = status


class ArtifactRefusedError(EsdeployError):
    """The artifact cannot be deployed as it is (no manifest, another model's, a malformed field,
    changed since it was pinned): the task ends `refused` at once, naming what is wrong."""


class UnreadableMessageError(EsdeployError):
    """A queue message no reader understands: logged and acknowledged, since no retry can fix it."""


class ConfigurationError(EsdeployError):
    """A setting is missing or malformed; the message names it."""


class UnreadableItemError(EsdeployError):
    """A stored item lacks an attribute or holds one of the wrong type (a hand edit in the console, a
    write from an older version): the readers that scan many items skip it and go on with the rest."""

    def __init__(self, table: str, key: str, problem: str) -> None:
        super().__init__(
            f"the item `{key}` of table {table} cannot be read: {problem}; repair or delete it "
            "(the DynamoDB console edits it)"
        )
        self.table = table
        self.key = key
        self.problem = problem
