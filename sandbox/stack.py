"""The local stack: the real handlers, unchanged, on moto, behind a local gateway, runner and scheduler."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoice_bridge.destinations import PLATFORMS
from invoice_bridge.store import StateStore
from sandbox.aws_local import FAKE_CREDENTIALS, LocalAws, Provisioned, intrinsics_for, process_environment_without_aws
from sandbox.buildnexion import BuildNexionPeer
from sandbox.cfn import ACCOUNT_ID, REGION, Intrinsics, Template, TemplateError
from sandbox.console import stderr_line
from sandbox.functions import FunctionPool, LogSink, function_environment
from sandbox.gateway import route_to
from sandbox.httpserver import AccessLog, AccessRecord, LocalHttpServer, Reply, Request, Router
from sandbox.peers import create_peer
from sandbox.runner import MIN_WORKERS, Scheduler, SqsMapping, SqsPoller
from sandbox.settings import API_URL_PARAMETERS, LocalSettings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_TABLE = "StateTable"


def stderr_log_sink(function: str, line: str) -> None:
    """Function log lines to stderr, prefixed with the function, as `sam logs` shows them."""
    stderr_line(f"[{function}] {line}")


@dataclass
class StackOptions:
    """How to run the stack."""

    root: Path = REPO_ROOT
    port: int = 3000
    environ: Mapping[str, str] | None = None
    log_sink: LogSink = stderr_log_sink
    workers_per_queue: int = MIN_WORKERS
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    access_log: AccessLog | None = None  # called once per gateway request (see gateway_access_line)
    faults: str | None = None  # the sandbox peers' faults (as LOCAL_FAULTS, which this overrides)


def gateway_access_line(record: AccessRecord) -> str:
    """`[local-gateway] POST /webhooks/buildnexion 200 12 ms evt_...`: one line per answered request."""
    event_id = "-"
    for body in (record.reply.body, record.request.body):
        try:
            document = json.loads(body)
        except ValueError:
            continue
        if isinstance(document, dict) and isinstance(document.get("event_id") or document.get("id"), str):
            event_id = document.get("event_id") or document["id"]
            break
    return (
        f"[local-gateway] {record.request.method} {record.request.path} {record.reply.status} "
        f"{record.milliseconds:.0f} ms {event_id}"
    )


def drained_queue(resource: Mapping[str, Any]) -> str | None:
    """The queue a function drains itself (no event source mapping), named by its template Metadata."""
    hint = ((resource.get("Metadata") or {}).get("InvoiceBridge") or {}).get("DrainsQueue")
    return hint if isinstance(hint, str) else None


_API_URL_PREFIX = "https://${%s}.execute-api.${AWS::Region}.${AWS::URLSuffix}"


def localize_api_urls(value: Any, api_ids: set[str], local_url: str) -> Any:
    """`value` with every `!Sub` URL of a template HTTP API (`https://${Api}.execute-api...`) on `local_url`."""
    if isinstance(value, list):
        return [localize_api_urls(v, api_ids, local_url) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        text = value["Fn::Sub"]
        for api_id in api_ids:
            text = text.replace(_API_URL_PREFIX % api_id, local_url)
        return {"Fn::Sub": text}
    return {k: localize_api_urls(v, api_ids, local_url) for k, v in value.items()}


class LocalStack:
    """Everything `invoice-bridge local serve` runs, startable from tests too."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        environ = self.options.environ
        if self.options.faults is not None:
            environ = {**(os.environ if environ is None else environ), "LOCAL_FAULTS": self.options.faults}
        self.settings = LocalSettings.from_env(environ)
        self.template = Template.load(self.options.root / "template.yaml")
        self.aws = LocalAws()
        self.peers: dict[str, Any] = {}
        self.api_urls: dict[str, str] = {}
        self.pools: dict[str, FunctionPool] = {}
        self.pollers: list[SqsPoller] = []
        self.scheduler: Scheduler | None = None
        self.provisioned = Provisioned()
        self.routes: list[str] = []
        self._server: LocalHttpServer | None = None
        self._status_sqs: SQSClient | None = None
        self._state: StateStore | None = None
        self._lock = threading.Lock()
        self._intrinsics: Intrinsics | None = None
        self._parameters: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start moto, provision the template, start peers, functions, gateway, runner and scheduler."""
        try:
            self.aws.start()
            self.provisioned = self.aws.provision(self.template, self.settings.secret_values())
            self._status_sqs = self.aws.sqs()
            self._state = StateStore(self.aws.dynamodb(), self.provisioned.tables[STATE_TABLE])
            self._start_peers()
            parameters = {
                **self.template.parameter_defaults(),
                **self._url_parameters(),
                **self.options.parameter_overrides,
            }
            intrinsics = intrinsics_for(self.template, parameters, self.provisioned)
            self._intrinsics = intrinsics
            self._parameters = parameters
            base_env = {**process_environment_without_aws(), **self.aws.environment()}
            # Bound first (routes come later), so the functions' environment can name the gateway's URL.
            router = Router()
            self._server = LocalHttpServer(router, port=self.options.port, access_log=self.options.access_log)
            api_ids = set(self.template.resources_of_type("AWS::Serverless::HttpApi"))
            for spec in self.template.functions:
                environment = localize_api_urls(spec.environment, api_ids, self._server.url)
                resolved = intrinsics.resolve(environment)
                env = function_environment(spec, resolved, base_env, self.options.root)
                self.pools[spec.logical_id] = FunctionPool(spec, env, self.options.log_sink)
            router.add("GET", "/local/status", self._status_route)
            router.add("GET", "/local/outputs", self._outputs_route)
            router.add("GET", "/local/inspect/{platform}", self._inspect_route)
            self._add_http_routes(router)
            self._add_event_sources(intrinsics)
            self._server.start()
            for poller in self.pollers:
                poller.start()
            if self.scheduler:
                self.scheduler.start()
        except BaseException:
            self.stop()
            raise

    def stop_promptly(self) -> None:
        """Serve's Ctrl-C: answer the requests under way, then end the function instances at once.

        Work under way in a worker is abandoned as a Lambda timeout would abandon it (its messages return to
        their queue), and the daemon threads are not waited for: the process exits next.
        """
        from sandbox.functions import abandon

        if self.scheduler:
            self.scheduler.request_stop()
        for poller in self.pollers:
            poller.request_stop()
        if self._server:
            self._server.stop()
            self._server = None
        for pool in self.pools.values():
            abandon(pool)

    def stop(self) -> None:
        """Stop everything that was started, in reverse order."""
        if self.scheduler:
            self.scheduler.stop()
        # Every poller waits up to a second for its current receive: stop them together, not one after another.
        stoppers = [threading.Thread(target=poller.stop) for poller in self.pollers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        if self._server:
            self._server.stop()
            self._server = None
        for pool in self.pools.values():
            pool.close()
        for peer in self.peers.values():
            peer.stop()
        self.peers.clear()
        if self.aws.endpoint:
            self.aws.stop()
            self.aws.endpoint = ""

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        if not self._server:
            raise RuntimeError("the stack is not running")
        return self._server.url

    # -- wiring ------------------------------------------------------------------------------------

    def _start_peers(self) -> None:
        for platform, url in self.settings.api_urls().items():
            if url:
                self.api_urls[platform] = url
        if "buildnexion" not in self.api_urls:
            peer = BuildNexionPeer(
                self.settings.buildnexion_api_key,
                self.settings.webhook_secrets(),
                faults=self.settings.fault_settings().plan("buildnexion"),
            )
            peer.start()
            self.peers["buildnexion"] = peer
            self.api_urls["buildnexion"] = peer.base_url
        for platform in (d.value for d in PLATFORMS):
            if platform in self.api_urls:
                continue
            destination_peer = create_peer(platform, self.settings)
            if destination_peer is None:
                continue
            destination_peer.start()
            self.peers[platform] = destination_peer
            self.api_urls[platform] = destination_peer.base_url

    def _url_parameters(self) -> dict[str, str]:
        return {API_URL_PARAMETERS[platform]: url for platform, url in self.api_urls.items()}

    def _add_http_routes(self, router: Router) -> None:
        for spec in self.template.functions:
            for name, event in spec.events_of_type("HttpApi").items():
                props = event.get("Properties") or {}
                method, path = str(props.get("Method", "")).upper(), props.get("Path")
                if not path or method in {"", "ANY"} or "{" in str(path):
                    raise TemplateError(f"{spec.logical_id}.{name}: only fixed paths and methods are played locally")
                route_key = f"{method} {path}"
                router.add(method, str(path), route_to(self.pools[spec.logical_id], route_key))
                self.routes.append(route_key)

    def _add_event_sources(self, intrinsics: Intrinsics) -> None:
        targets = []
        for spec in self.template.functions:
            pool = self.pools[spec.logical_id]
            for name, event in spec.events_of_type("SQS").items():
                props = event.get("Properties") or {}
                queue_ref = props.get("Queue")
                if not (isinstance(queue_ref, dict) and "Fn::GetAtt" in queue_ref):
                    raise TemplateError(f"{spec.logical_id}.{name}: Queue must be !GetAtt <Queue>.Arn")
                queue = self.provisioned.queues[queue_ref["Fn::GetAtt"][0]]
                # A parameter (!Ref) sets it as often as a literal does.
                scaling = intrinsics.resolve((props.get("ScalingConfig") or {}).get("MaximumConcurrency"))
                mapping = SqsMapping(
                    queue=queue,
                    batch_size=int(props.get("BatchSize") or 10),
                    report_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    # Lambda's MaximumConcurrency for SQS is never below 2; neither are the local workers.
                    workers=max(MIN_WORKERS, min(self.options.workers_per_queue, int(scaling or 1000))),
                )
                self.pollers.append(SqsPoller(mapping, pool, self.aws.sqs(), self._log))
            for name, _event in spec.events_of_type("Schedule", "ScheduleV2").items():
                targets.append((f"{spec.logical_id}-{name}", pool))
        self.scheduler = Scheduler(targets, self.settings.schedule_seconds, self._log)

    def _log(self, line: str) -> None:
        self.options.log_sink("local-stack", line)

    # -- status ------------------------------------------------------------------------------------

    def consumed_queues(self) -> set[str]:
        """Queues that a wired function consumes: SQS event sources, and queues a function drains itself."""
        drained = {
            queue
            for logical_id in self.pools
            if (queue := drained_queue(self.template.resources.get(logical_id, {}))) in self.provisioned.queues
        }
        return {poller.mapping.queue.logical_id for poller in self.pollers} | drained

    def status(self) -> dict[str, Any]:
        """`GET /local/status`: queue depths, open tuimprenta batches, and whether anything is left to do."""
        if self._status_sqs is None or self._state is None:
            raise RuntimeError("the stack is not running")
        sqs = self._status_sqs
        queues: dict[str, dict[str, int]] = {}
        pending_work = False
        consumed = self.consumed_queues()
        for logical_id, queue in self.provisioned.queues.items():
            if queue.dead_letter is None:
                continue  # dead-letter queues are reported with their source queue
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            dlq = self.provisioned.queues[queue.dead_letter]
            dlq_count = int(
                sqs.get_queue_attributes(QueueUrl=dlq.url, AttributeNames=["ApproximateNumberOfMessages"])[
                    "Attributes"
                ]["ApproximateNumberOfMessages"]
            )
            visible = int(attributes["ApproximateNumberOfMessages"])
            in_flight = int(attributes["ApproximateNumberOfMessagesNotVisible"])
            queues[logical_id] = {"visible": visible, "in_flight": in_flight, "dlq": dlq_count}
            if in_flight or (visible and logical_id in consumed):
                pending_work = True
        open_batches = self._state.count_open_tuimprenta_batches()
        running = any(pool.running for pool in self.pools.values()) or any(p.busy for p in self.pollers)
        return {
            "idle": not (pending_work or running or open_batches),
            "queues": queues,
            "open_batches": open_batches,
        }

    def _inspect_route(self, _request: Request, params: dict[str, str]) -> Reply:
        """`GET /local/inspect/{platform}`: what a sandbox platform holds now, read-only, no credential needed."""
        from sandbox.holdings import holdings, summary

        peer = self.peers.get(params["platform"])
        if peer is None:
            known = ", ".join(sorted(self.peers)) or "none (every platform URL is set from the environment)"
            return Reply.json(404, {"message": f"no sandbox peer {params['platform']!r}; sandbox peers: {known}"})
        held = holdings(peer)
        return Reply.json(200, {"platform": params["platform"], "summary": summary(held), "holds": held})

    def _status_route(self, _request: Request, _params: dict[str, str]) -> Reply:
        return Reply.json(200, self.status())

    # -- outputs (for the operator commands' --local) ------------------------------------------------

    def outputs(self) -> dict[str, str]:
        """The template's Outputs as this stack resolves them; the HTTP API's URLs point at the gateway."""
        if self._intrinsics is None:
            raise RuntimeError("the stack is not running")
        resolved: dict[str, str] = {}
        for key, spec in (self.template.document.get("Outputs") or {}).items():
            value = spec.get("Value")
            try:
                resolved[key] = str(self._intrinsics.resolve(value))
            except TemplateError:
                # `https://${WebhookApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/path`: the path, here.
                text = value.get("Fn::Sub") if isinstance(value, dict) else None
                if isinstance(text, str) and "${AWS::URLSuffix}" in text:
                    resolved[key] = self.url + text.split("${AWS::URLSuffix}", 1)[1]
        return resolved

    def queue_ages(self) -> dict[str, float]:
        """Seconds the oldest message of each queue has waited (CloudWatch's ApproximateAgeOfOldestMessage)."""
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[ACCOUNT_ID][REGION]
        now_ms = time.time() * 1000
        ages: dict[str, float] = {}
        for logical_id, queue in self.provisioned.queues.items():
            emulated = backend.queues.get(queue.name)
            stamps = [int(str(m.sent_timestamp)) for m in emulated._messages if m.sent_timestamp] if emulated else []
            ages[logical_id] = round((now_ms - min(stamps)) / 1000, 1) if stamps else 0.0
        return ages

    def _outputs_route(self, _request: Request, _params: dict[str, str]) -> Reply:
        return Reply.json(
            200,
            {
                "outputs": self.outputs(),
                "aws_endpoint": self.aws.endpoint,
                "region": REGION,
                "credentials": {
                    k: v for k, v in FAKE_CREDENTIALS.items() if k.startswith("AWS_") and "REGION" not in k
                },
                "routing_table": json.loads(self._parameters.get("RoutingTable") or "{}"),
                "queue_ages": self.queue_ages(),
            },
        )
