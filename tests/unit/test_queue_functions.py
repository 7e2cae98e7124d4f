"""The queue -> function map has one home, Chalice's (app.event_sources, filled by app.py's decorators): the
local stack and the harnesses read it through queue_functions, and infra/template.yaml's event sources agree."""
from __future__ import annotations

import app as app_module
from app import app
from esdeploy.local.embedded_aws import TEMPLATE, load_cfn
from esdeploy.local.pollers import queue_functions
from tests.conftest import TEST_ENV


def test_each_queue_goes_to_the_function_app_py_declares_for_it() -> None:
    deploy, teardown = TEST_ENV["ESDEPLOY_DEPLOY_QUEUE"], TEST_ENV["ESDEPLOY_TEARDOWN_QUEUE"]
    assert queue_functions(app) == {
        TEST_ENV["ESDEPLOY_REQUESTS_QUEUE"]: "requests_worker",
        deploy: "deploy_worker",
        teardown: "teardown_worker",
        f"{deploy}-dlq": "deploy_dead_letters",
        f"{teardown}-dlq": "teardown_dead_letters",
    }
    assert all(callable(getattr(app_module, function)) for function in queue_functions(app).values())


def test_the_templates_event_sources_feed_each_queue_to_the_function_chalice_holds_for_it() -> None:
    """infra/template.yaml patches Chalice's event sources to reference the queues it makes: the same queues."""
    resources = load_cfn(TEMPLATE)["Resources"]
    fed = {}
    for logical, resource in resources.items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            queue = event["Properties"]["Queue"]["Fn::Sub"]  # "${SomeQueue.Arn}"
            name = resources[queue[2:-len(".Arn}")]]["Properties"]["QueueName"]["Fn::Sub"]
            fed[name.replace("${Stage}", TEST_ENV["ESDEPLOY_STAGE"])] = logical
    # Chalice names a function's resource by its handler's name in CamelCase.
    assert fed == {
        queue: "".join(part.capitalize() for part in function.split("_"))
        for queue, function in queue_functions(app).items()
    }


def test_doctor_names_the_function_that_drains_each_dead_letter_queue_as_the_template_wires_it() -> None:
    """The installed esdeploy has no app.py: doctor keeps the two dead-letter queues' functions, held equal here."""
    from esdeploy.doctor import DRAINED_BY

    resources = load_cfn(TEMPLATE)["Resources"]
    for queue, function in DRAINED_BY.items():
        patch = resources["".join(part.capitalize() for part in function.split("_"))]["Properties"]
        assert [e["Properties"]["Queue"]["Fn::Sub"] for e in patch["Events"].values()] == [f"${{{queue}.Arn}}"]
        assert function in queue_functions(app).values()
