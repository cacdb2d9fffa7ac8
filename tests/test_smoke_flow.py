import pytest

pytestmark = pytest.mark.anyio


@pytest.mark.rfc("8628", "3.5")
async def test_full_flow_through_service_approval(server):
    user = await server.add_user()
    flow = await server.start_flow()
    pending = await server.poll(flow["device_code"])
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    assert await server.runtime.flows.approve(flow["user_code"], user_id=user.id) == "ok"
    server.clock.advance(5)
    granted = await server.poll(flow["device_code"])
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("dlk_")
    me = await server.http.get(
        "/api/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
