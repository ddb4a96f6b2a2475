"""Browsers: gRPC-Web (binary and text framing, unary and server-streaming) and CORS."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

from google.rpc import error_details_pb2, status_pb2

from agent_sdk.proto.maos.v1 import enums_pb2, system_service_pb2, task_service_pb2
from controlplane.app import App
from controlplane.http.grpcweb import parse_frames
from tests.harness.server import make_settings, start_app
from tests.http.conftest import Http


def web_request(message: bytes) -> bytes:
    """A hand-made gRPC-Web request body: flag 0x00, 4-byte big-endian length, the message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def trailer_map(payload: bytes) -> dict[str, str]:
    """The trailer frame's ``key:value\\r\\n`` lines."""
    lines = payload.decode().split("\r\n")
    return dict(line.split(":", 1) for line in lines if line)


async def test_grpc_web_unary_binary(http_plane: App, http: Http) -> None:
    response = await http.post(
        "/maos.v1.SystemService/GetStatus",
        data=web_request(system_service_pb2.GetStatusRequest().SerializeToString()),
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/grpc-web+proto"
    body = response.content
    assert body[0] == 0x00  # a message frame first
    (length,) = struct.unpack(">I", body[1:5])
    reply = system_service_pb2.GetStatusResponse.FromString(body[5 : 5 + length])
    assert reply.storage_backend == "sqlite"
    assert body[5 + length] == 0x80  # then the trailer frame
    frames = list(parse_frames(body))
    assert [flag for flag, _ in frames] == [0x00, 0x80]
    assert trailer_map(frames[1][1])["grpc-status"] == "0"


async def test_grpc_web_text_unary_and_error_trailers(http_plane: App, http: Http) -> None:
    request = task_service_pb2.SubmitTaskRequest()
    request.task.description = "from a browser"
    response = await http.post(
        "/maos.v1.TaskService/SubmitTask",
        data=base64.b64encode(web_request(request.SerializeToString())),
        headers={"content-type": "application/grpc-web-text"},
    )
    assert response.headers["content-type"] == "application/grpc-web-text+proto"
    frames = list(parse_frames(base64.b64decode(response.content)))
    task = task_service_pb2.SubmitTaskResponse.FromString(frames[0][1]).task
    assert task.description == "from a browser"
    assert (await http.get(f"/v1/{task.name}")).json()["task"]["description"] == "from a browser"
    missing = task_service_pb2.GetTaskRequest(name="tasks/t0000")
    refused = await http.post(
        "/maos.v1.TaskService/GetTask",
        data=web_request(missing.SerializeToString()),
        headers={"content-type": "application/grpc-web+proto"},
    )
    frames = list(parse_frames(refused.content))
    assert [flag for flag, _ in frames] == [0x80]  # trailers only
    trailers = trailer_map(frames[0][1])
    assert trailers["grpc-status"] == "5"
    details = trailers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(details + "=" * (-len(details) % 4)))
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.reason == "ERROR_REASON_TASK_NOT_FOUND"
    garbage = await http.post(
        "/maos.v1.TaskService/GetTask",
        data=b"\x00\x00\x00\x00\x09abc",
        headers={"content-type": "application/grpc-web+proto"},
    )
    assert trailer_map(next(iter(parse_frames(garbage.content)))[1])["grpc-status"] == "3"
    streaming_in = await http.post(
        "/maos.v1.TaskService/StreamSubmitTasks",
        data=web_request(b""),
        headers={"content-type": "application/grpc-web+proto"},
    )
    assert trailer_map(next(iter(parse_frames(streaming_in.content)))[1])["grpc-status"] == "12"


async def test_grpc_web_server_streaming(http_plane: App, http: Http) -> None:
    name = (await http.post("/v1/tasks", json={"task": {"description": "stream"}})).json()["task"]["name"]
    cancel = await http.post(f"/v1/{name}:cancel", json={"reason": "done with it"})
    assert cancel.status_code == 200
    request = task_service_pb2.WatchTaskRequest(name=name)
    response = await http.post(
        "/maos.v1.TaskService/WatchTask",
        data=web_request(request.SerializeToString()),
        headers={"content-type": "application/grpc-web+proto"},
    )
    frames = list(parse_frames(response.content))
    assert frames[-1][0] == 0x80 and trailer_map(frames[-1][1])["grpc-status"] == "0"
    messages = [task_service_pb2.WatchTaskResponse.FromString(p) for flag, p in frames if flag == 0x00]
    assert messages[0].task.name == name
    assert messages[-1].task.status == enums_pb2.TaskStatus.Value("TASK_STATUS_CANCELLED")


async def test_cors_refused_by_default(http_plane: App, http: Http) -> None:
    preflight = await http.call(
        "OPTIONS",
        "/v1/tasks",
        headers={"Origin": "https://ops.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    plain = await http.get("/health", headers={"Origin": "https://ops.example.com"})
    assert "access-control-allow-origin" not in plain.headers


async def test_cors_allows_configured_origins_only(maos_home: Path) -> None:
    app = await start_app(
        make_settings(maos_home, **{"server.http_cors_origins": ["https://ops.example.com"]}), http=True
    )
    try:
        http = Http(app)
        preflight = await http.call(
            "OPTIONS",
            "/v1/tasks",
            headers={
                "Origin": "https://ops.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://ops.example.com"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        refused = await http.call(
            "OPTIONS",
            "/v1/tasks",
            headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        simple = await http.get("/v1/tasks", headers={"Origin": "https://ops.example.com"})
        assert simple.headers["access-control-allow-origin"] == "https://ops.example.com"
        web = await http.post(
            "/maos.v1.SystemService/GetStatus",
            data=web_request(b""),
            headers={"Origin": "https://ops.example.com", "content-type": "application/grpc-web+proto"},
        )
        assert "grpc-status" in web.headers["access-control-expose-headers"]
    finally:
        await app.stop(grace=1.0)
