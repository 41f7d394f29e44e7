"""Responses API fixtures from docs/shared reference ``xai-responses-api.md`` (own examples,
the illustrative stream verbatim, the 2025 item shapes of the recorded fixtures it describes).

Shared by ``test_responses_schemas.py``, ``test_response_assembler.py`` and ``test_usage.py``.
"""

from __future__ import annotations

import json
from typing import Any

#: §2.2 "Own example request".
EXAMPLE_REQUEST: dict[str, Any] = {
    "model": "grok-4.3",
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Summarise this week's posts about solar sails."}]}
    ],
    "tools": [
        {"type": "x_search", "from_date": "2026-09-01", "to_date": "2026-09-07"},
        {
            "type": "function",
            "name": "save_note",
            "description": "Store a note",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        },
    ],
    "max_turns": 4,
    "prompt_cache_key": "session-7f2a",
}

#: §3 "Own example": a finished turn that stops on a client tool (non-streaming body).
FUNCTION_CALL_RESPONSE: dict[str, Any] = {
    "id": "0b6d2c1e-5a7f-4c1b-9e0a-2f3d4c5b6a70", "object": "response", "created_at": 1790000000,
    "completed_at": 1790000003, "model": "grok-4.3", "status": "completed", "store": True,
    "previous_response_id": None, "tool_choice": "auto", "parallel_tool_calls": True,
    "reasoning": {"effort": None, "summary": None}, "text": {"format": {"type": "text"}},
    "tools": [{"type": "function", "name": "save_note", "description": "Store a note",
               "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}, "strict": None}],
    "output": [
        {"type": "reasoning", "id": "rs_0b6d2c1e-5a7f-4c1b-9e0a-2f3d4c5b6a70", "status": "completed",
         "summary": [{"type": "summary_text", "text": "User wants it saved."}]},
        {"type": "function_call", "id": "fc_0b6d2c1e-5a7f-4c1b-9e0a-2f3d4c5b6a70_0", "status": "completed",
         "call_id": "call_51d0", "name": "save_note", "arguments": "{\"text\":\"buy rope\"}"}],
    "usage": {"input_tokens": 310, "input_tokens_details": {"cached_tokens": 256}, "output_tokens": 64,
              "output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 374,
              "num_sources_used": 0, "num_server_side_tools_used": 0, "cost_in_usd_ticks": 5470000},
    "incomplete_details": None, "error": None, "metadata": {}, "user": None,
}  # fmt: skip

#: §4 "Own illustrative stream", verbatim (one ``data:`` payload per line; abridged snapshots).
ILLUSTRATIVE_STREAM: list[str] = [
    '{"type":"response.created","sequence_number":0,"response":{"id":"R","object":"response","status":"in_progress","output":[],"usage":null}}',
    '{"type":"response.in_progress","sequence_number":1,"response":{"id":"R","status":"in_progress","output":[],"usage":null}}',
    '{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"reasoning","id":"rs_R","status":"in_progress","summary":[]}}',
    '{"type":"response.reasoning_summary_text.delta","sequence_number":3,"item_id":"rs_R","output_index":0,"summary_index":0,"delta":"Need a fresh source."}',  # noqa: E501
    '{"type":"response.output_item.done","sequence_number":4,"output_index":0,"item":{"type":"reasoning","id":"rs_R","status":"completed","summary":[{"type":"summary_text","text":"Need a fresh source."}]}}',  # noqa: E501
    '{"type":"response.output_item.added","sequence_number":5,"output_index":1,"item":{"type":"web_search_call","id":"ws_R_1","status":"in_progress","action":{"type":"search","query":"","sources":[]}}}',
    '{"type":"response.web_search_call.searching","sequence_number":6,"item_id":"ws_R_1","output_index":1}',
    '{"type":"response.web_search_call.completed","sequence_number":7,"item_id":"ws_R_1","output_index":1}',
    '{"type":"response.output_item.done","sequence_number":8,"output_index":1,"item":{"type":"web_search_call","id":"ws_R_1","status":"completed","action":{"type":"search","query":"tide tables Brest","sources":[]}}}',  # noqa: E501
    '{"type":"response.output_item.added","sequence_number":9,"output_index":2,"item":{"type":"message","id":"msg_R","role":"assistant","status":"in_progress","content":[]}}',
    '{"type":"response.content_part.added","sequence_number":10,"item_id":"msg_R","output_index":2,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}',
    '{"type":"response.output_text.delta","sequence_number":11,"item_id":"msg_R","output_index":2,"content_index":0,"delta":"High tide is at 14:05.[[1]](https://tides.example/brest)"}',  # noqa: E501
    '{"type":"response.output_text.annotation.added","sequence_number":12,"item_id":"msg_R","output_index":2,"content_index":0,"annotation_index":0,"annotation":{"type":"url_citation","url":"https://tides.example/brest","title":"1","start_index":22,"end_index":56}}',
    '{"type":"response.output_text.done","sequence_number":13,"item_id":"msg_R","output_index":2,"content_index":0,"text":"High tide is at 14:05.[[1]](https://tides.example/brest)"}',  # noqa: E501
    '{"type":"response.content_part.done","sequence_number":14,"item_id":"msg_R","output_index":2,"content_index":0,"part":{"type":"output_text","text":"…"}}',
    '{"type":"response.output_item.done","sequence_number":15,"output_index":2,"item":{"type":"message","id":"msg_R","status":"completed","role":"assistant","content":["…"]}}',
    '{"type":"response.completed","sequence_number":16,"response":{"id":"R","status":"completed","output":["…3 items…"],"usage":{"input_tokens":5120,"input_tokens_details":{"cached_tokens":4096},"output_tokens":180,"output_tokens_details":{"reasoning_tokens":120},"total_tokens":5300,"num_sources_used":0,"num_server_side_tools_used":1,"server_side_tool_usage_details":{"web_search_calls":1},"cost_in_usd_ticks":123400000}}}',  # noqa: E501
]

#: The same answer as the illustrative stream, unstreamed: what create (or GET) would return.
TIDE_USAGE: dict[str, Any] = json.loads(ILLUSTRATIVE_STREAM[-1])["response"]["usage"]
TIDE_TEXT = "High tide is at 14:05.[[1]](https://tides.example/brest)"
TIDE_RESPONSE: dict[str, Any] = {
    "id": "R", "object": "response", "model": "grok-4.3", "status": "completed",
    "output": [
        {"type": "reasoning", "id": "rs_R", "status": "completed",
         "summary": [{"type": "summary_text", "text": "Need a fresh source."}]},
        {"type": "web_search_call", "id": "ws_R_1", "status": "completed",
         "action": {"type": "search", "query": "tide tables Brest", "sources": []}},
        {"type": "message", "id": "msg_R", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": TIDE_TEXT, "annotations": [
             {"type": "url_citation", "url": "https://tides.example/brest", "title": "1",
              "start_index": 22, "end_index": 56}]}]},
    ],
    "usage": TIDE_USAGE,
}  # fmt: skip

#: §3.1 shapes: 2025 recordings (server-side calls as name + JSON arguments, call_id ""), the
#: Dec-2025 X sub-calls as custom_tool_call, 2026 / spec shapes, and types not modelled here.
ITEMS_2025: list[dict[str, Any]] = [
    {"type": "web_search_call", "id": "fc_R_0", "name": "web_search",
     "arguments": "{\"query\":\"solar sail news\",\"num_results\":5}", "call_id": "", "status": "completed"},
    {"type": "x_search_call", "id": "fc_R_1", "name": "x_semantic_search",
     "arguments": "{\"query\":\"solar sails\",\"limit\":10}", "call_id": "", "status": "completed"},
    {"type": "custom_tool_call", "id": "ctc_R_2", "call_id": "xs_call_1", "name": "x_keyword_search",
     "input": "{\"query\":\"#solarsail\"}", "status": "completed"},
    {"type": "web_search_call", "id": "ws_R_3", "status": "completed", "action": {"type": "search", "query": ""}},
    {"type": "code_interpreter_call", "id": "fc_R_4", "name": "code_execution",
     "arguments": "{\"code\":\"print(2 ** 10)\"}", "call_id": "", "status": "completed"},
]  # fmt: skip
ITEMS_2026: list[dict[str, Any]] = [
    {"type": "web_search_call", "id": "ws_R_0", "status": "completed",
     "action": {"type": "open_page", "url": "https://tides.example/brest"}},
    {"type": "code_interpreter_call", "id": "ci_R_1", "status": "completed", "code": "print(2 ** 10)",
     "outputs": [{"type": "logs", "logs": "1024\n"}]},
    {"type": "file_search_call", "id": "fs_R_2", "status": "completed", "queries": ["tide", "Brest"],
     "results": None},
    {"type": "mcp_call", "id": "mcp_R_3", "name": "get_rows", "server_label": "silo",
     "arguments": "{\"table\":\"tides\"}", "output": "[]", "status": "completed"},
    {"type": "image_generation_call", "id": "ig_R_4", "status": "completed", "result": None, "prompt": "a sail"},
    {"type": "hologram_call", "id": "h_R_5", "status": "completed", "depth": 3},
    {"type": "compaction", "id": "cp_R_6", "encrypted_content": "opaque"},
]  # fmt: skip
