"""MQTT 5.0 features checked with paho-mqtt: subscription options, subscription
identifiers, shared subscriptions, topic aliases, request/response and
properties passed through.

Owns: the 5.0-only behaviour a subscriber or publisher can observe.
Must never: depend on another test's state (each test uses its own `topic`).
"""

from paho.mqtt.packettypes import PacketTypes

from conftest import mosquitto_deviation, prop, props

# ---------------------------------------------------------------- subscription options


def test_no_local_suppresses_own_messages_only(make_client, topic):
    # [MQTT-3.8.3-3]: with No Local, messages are not forwarded to the publishing connection.
    me = make_client().connect()
    me.subscribe(f"{topic}/x", qos=1, no_local=True)
    me.publish(f"{topic}/x", b"mine", qos=1)
    me.expect_none()
    make_client().connect().publish(f"{topic}/x", b"theirs", qos=1)
    assert me.expect_one().payload == b"theirs"


def test_without_no_local_own_messages_are_received(make_client, topic):
    me = make_client().connect()
    me.subscribe(f"{topic}/x", qos=1, no_local=False)
    me.publish(f"{topic}/x", b"mine", qos=1)
    assert me.expect_one().payload == b"mine"


def retained_setup(make_client, topic):
    pub = make_client().connect()
    pub.publish(f"{topic}/r", b"kept", qos=1, retain=True)
    return make_client().connect()


def test_retain_handling_0_sends_retained_on_every_subscribe(make_client, topic):
    # 5.0 [MQTT-3.3.1-9]: Retain Handling 0 sends retained messages at every SUBSCRIBE.
    sub = retained_setup(make_client, topic)
    sub.subscribe(f"{topic}/r", qos=1, retain_handling=0)
    assert sub.expect_one().payload == b"kept"
    sub.subscribe(f"{topic}/r", qos=1, retain_handling=0)
    assert sub.expect_one().payload == b"kept"


def test_retain_handling_1_sends_retained_only_for_a_new_subscription(make_client, topic):
    # 5.0 [MQTT-3.3.1-10]: Retain Handling 1 sends them only if the subscription did not exist.
    sub = retained_setup(make_client, topic)
    sub.subscribe(f"{topic}/r", qos=1, retain_handling=1)
    assert sub.expect_one().payload == b"kept"
    sub.subscribe(f"{topic}/r", qos=1, retain_handling=1)
    sub.expect_none()


def test_retain_handling_2_never_sends_retained(make_client, topic):
    # 5.0 [MQTT-3.3.1-11]: Retain Handling 2 sends no retained messages at SUBSCRIBE.
    sub = retained_setup(make_client, topic)
    sub.subscribe(f"{topic}/r", qos=1, retain_handling=2)
    sub.expect_none()
    make_client().connect().publish(f"{topic}/r", b"live", qos=1)
    assert sub.expect_one().payload == b"live"


def test_retain_as_published_keeps_the_retain_flag_on_live_delivery(make_client, topic):
    # 5.0 [MQTT-3.3.1-12]: RAP 0 -> RETAIN 0 on forwarded messages; [MQTT-3.3.1-13]: RAP 1 -> as published.
    rap = make_client().connect()
    rap.subscribe(f"{topic}/r", qos=1, retain_as_published=True)
    plain = make_client().connect()
    plain.subscribe(f"{topic}/r", qos=1, retain_as_published=False)
    pub = make_client().connect()
    pub.publish(f"{topic}/r", b"live", qos=1, retain=True)
    assert rap.expect_one().retain is True
    assert plain.expect_one().retain is False
    pub.publish(f"{topic}/r", b"not-retained", qos=1, retain=False)
    assert rap.expect_one().retain is False


def test_retained_replay_sets_retain_flag_whatever_retain_as_published(make_client, topic):
    # 5.0 section 3.3.1.3: messages sent because of a new subscription have RETAIN 1.
    sub = retained_setup(make_client, topic)
    sub.subscribe(f"{topic}/r", qos=1, retain_as_published=False)
    assert sub.expect_one().retain is True


# ---------------------------------------------------------------- subscription identifiers


def test_delivered_messages_carry_their_subscription_identifiers(make_client, topic):
    # [MQTT-3.3.4-3]: the identifier of each matching subscription is sent with the message;
    # overlapping subscriptions may give one message with both ids or one copy per
    # subscription ([MQTT-3.3.4-4], [MQTT-3.3.4-5]): both forms pass.
    sub = make_client().connect()
    sub.subscribe(f"{topic}/a/+", qos=1, subscription_id=5)
    sub.subscribe(f"{topic}/#", qos=1, subscription_id=7)
    sub.subscribe(f"{topic}/plain", qos=1)
    pub = make_client().connect()
    pub.publish(f"{topic}/a/x", b"both", qos=1)
    got = sub.collect(1.0)
    ids = sorted(i for m in got for i in (prop(m, "SubscriptionIdentifier") or []))
    assert ids == [5, 7], f"ids on {[(m.payload, prop(m, 'SubscriptionIdentifier')) for m in got]}"
    assert all(m.payload == b"both" for m in got)
    pub.publish(f"{topic}/b", b"one", qos=1)
    m = sub.expect_one()
    assert prop(m, "SubscriptionIdentifier") == [7]
    sub.expect_none(0.3)


def test_subscription_without_identifier_delivers_none(make_client, topic):
    # [MQTT-3.3.4-3] only identifiers that were set are sent.
    sub = make_client().connect()
    sub.subscribe(f"{topic}/plain", qos=1)
    make_client().connect().publish(f"{topic}/plain", b"x", qos=1)
    assert prop(sub.expect_one(), "SubscriptionIdentifier") is None


def test_resubscribing_replaces_the_subscription_identifier(make_client, topic):
    # [MQTT-3.8.4-3]: a SUBSCRIBE for an existing filter replaces that subscription.
    sub = make_client().connect()
    sub.subscribe(f"{topic}/x", qos=1, subscription_id=3)
    sub.subscribe(f"{topic}/x", qos=1, subscription_id=9)
    make_client().connect().publish(f"{topic}/x", b"x", qos=1)
    assert prop(sub.expect_one(), "SubscriptionIdentifier") == [9]
    sub.expect_none(0.3)


# ---------------------------------------------------------------- shared subscriptions


def test_shared_subscription_splits_messages_between_members(make_client, topic):
    # 5.0 section 4.8.2: each message goes to exactly one member of the group. That both
    # members get some is not required by the spec, but any balancing strategy
    # (mosquitto: round robin) gives both a share of 20 messages; Canopy's SPEC expects it.
    members = [make_client().connect() for _ in range(2)]
    for m in members:
        assert m.subscribe(f"$share/g/{topic}/s", qos=1) == [1]
    plain = make_client().connect()
    plain.subscribe(f"{topic}/s", qos=1)
    pub = make_client().connect()
    sent = [f"{i}".encode() for i in range(20)]
    for p in sent:
        pub.publish(f"{topic}/s", p, qos=1)
    assert [m.payload for m in plain.expect(len(sent))] == sent, "ordinary subscriber gets all"
    shares = [[m.payload for m in c.collect(1.5)] for c in members]
    assert sorted(shares[0] + shares[1], key=int) == sent, f"each message once: {shares}"
    assert shares[0] and shares[1], f"both members must get a share: {shares}"
    for m in members:
        assert all(msg.topic == f"{topic}/s" for msg in m.collect(0.1))


@mosquitto_deviation("2.0.11 sends retained messages when a shared subscription is made")
def test_shared_subscription_does_not_replay_retained_messages(make_client, topic):
    # 5.0 section 3.3.1.3: retained messages are sent when a new *non-shared* subscription
    # is made; a shared subscription gets none (EMQX and HiveMQ behave so; mosquitto does not).
    sub = retained_setup(make_client, topic)
    sub.subscribe(f"$share/g/{topic}/r", qos=1)
    sub.expect_none()


def test_remaining_member_gets_everything_after_the_other_leaves(make_client, topic):
    a = make_client().connect()
    b = make_client().connect()
    a.subscribe(f"$share/g2/{topic}/s", qos=1)
    b.subscribe(f"$share/g2/{topic}/s", qos=1)
    b.unsubscribe(f"$share/g2/{topic}/s")
    pub = make_client().connect()
    for i in range(5):
        pub.publish(f"{topic}/s", f"{i}".encode(), qos=1)
    assert [m.payload for m in a.expect(5)] == [f"{i}".encode() for i in range(5)]
    b.expect_none(0.3)


# ---------------------------------------------------------------- topic aliases


def test_topic_alias_from_publisher_reaches_subscriber_as_full_topic(make_client, topic):
    # 5.0 section 3.3.2.3.4: the receiver of an alias-only PUBLISH uses the mapped topic;
    # subscribers whose CONNECT has no Topic Alias Maximum never get aliases, so they see
    # the full topic name. An alias can be remapped by a PUBLISH with topic and alias.
    sub = make_client().connect()
    sub.subscribe(f"{topic}/#", qos=1)
    pub = make_client().connect()
    maximum = getattr(pub.connack_properties, "TopicAliasMaximum", 0)
    assert maximum >= 1, "broker must accept topic aliases (CONNACK Topic Alias Maximum)"
    alias = props(PacketTypes.PUBLISH, TopicAlias=1)
    pub.publish(f"{topic}/long/name", b"set", qos=1, properties=alias)
    pub.publish("", b"by-alias", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish(f"{topic}/other", b"remap", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("", b"remapped", qos=0, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    got = sub.expect(4)
    assert [(m.topic, m.payload) for m in got] == [
        (f"{topic}/long/name", b"set"),
        (f"{topic}/long/name", b"by-alias"),
        (f"{topic}/other", b"remap"),
        (f"{topic}/other", b"remapped"),
    ]
    assert all(prop(m, "TopicAlias") is None for m in got)


# ---------------------------------------------------------------- request/response, properties


def test_request_response_passes_response_topic_and_correlation_data(make_client, topic):
    # [MQTT-3.3.2-15]/[MQTT-3.3.2-16]: Response Topic and Correlation Data unaltered.
    responder = make_client().connect()
    responder.subscribe(f"{topic}/req", qos=1)
    requester = make_client().connect()
    requester.subscribe(f"{topic}/resp/{requester.client_id}", qos=1)
    request_props = props(PacketTypes.PUBLISH, ResponseTopic=f"{topic}/resp/{requester.client_id}",
                          CorrelationData=b"\x00\x01corr\xff")
    requester.publish(f"{topic}/req", b"question", qos=1, properties=request_props)
    req = responder.expect_one()
    assert prop(req, "ResponseTopic") == f"{topic}/resp/{requester.client_id}"
    assert prop(req, "CorrelationData") == b"\x00\x01corr\xff"
    responder.publish(prop(req, "ResponseTopic"), b"answer", qos=1,
                      properties=props(PacketTypes.PUBLISH, CorrelationData=prop(req, "CorrelationData")))
    resp = requester.expect_one()
    assert (resp.payload, prop(resp, "CorrelationData")) == (b"answer", b"\x00\x01corr\xff")


def test_user_properties_pass_through_in_order(make_client, topic):
    # [MQTT-3.3.2-17]/[MQTT-3.3.2-18]: user properties unaltered and in order, duplicates kept.
    sub = make_client().connect()
    sub.subscribe(f"{topic}/x", qos=1)
    user = [("b", "2"), ("a", "1"), ("b", "3"), ("ünï", "cödé"), ("empty", "")]
    make_client().connect().publish(f"{topic}/x", b"x", qos=1,
                                    properties=props(PacketTypes.PUBLISH, UserProperty=user))
    assert prop(sub.expect_one(), "UserProperty") == user


def test_content_type_and_payload_format_pass_through(make_client, topic):
    # [MQTT-3.3.2-4] Payload Format Indicator and [MQTT-3.3.2-20] Content Type unaltered.
    sub = make_client().connect()
    sub.subscribe(f"{topic}/x", qos=1)
    p = props(PacketTypes.PUBLISH, ContentType="application/json", PayloadFormatIndicator=1)
    make_client().connect().publish(f"{topic}/x", b'{"a":1}', qos=1, properties=p)
    m = sub.expect_one()
    assert (prop(m, "ContentType"), prop(m, "PayloadFormatIndicator")) == ("application/json", 1)


def test_v5_properties_do_not_reach_a_311_subscriber_but_the_message_does(make_client, topic):
    old = make_client("3.1.1").connect()
    old.subscribe(f"{topic}/x", qos=1)
    p = props(PacketTypes.PUBLISH, UserProperty=[("k", "v")], ContentType="text/plain")
    make_client().connect().publish(f"{topic}/x", b"hello", qos=1, properties=p)
    m = old.expect_one()
    assert (m.topic, m.payload, m.qos) == (f"{topic}/x", b"hello", 1)
