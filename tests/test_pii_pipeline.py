"""--pii through the build: stats.json per-type counts, the pii reject reason, the report."""

from __future__ import annotations

import json

import pytest

from pipelines.report import render
from tests.pipeline_util import build, read_jsonl_gz

ROWS = [
    {"qid": "1", "title": "怎么联系客服", "answer": "您好，请拨打客服电话13812345678或者发送邮件到service@example.com"
                                              "咨询，我们的工作人员会在二十四小时之内回复您的问题。"},
    {"qid": "2", "title": "北京的天气", "answer": "北京属于温带季风气候，夏季高温多雨，冬季寒冷干燥，春秋两季比较短暂，"
                                           "全年降水主要集中在七八月份。订单号4111111111111111已发货。"},
    {"qid": "3", "title": "身份证问题", "answer": "我的身份证号码是11010519491231002X，请问在哪里可以补办新的身份证，"
                                           "需要带哪些材料去办理比较好？"},
]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    p = tmp_path_factory.mktemp("pii") / "qa.baike2018qa.jsonl"
    p.write_text("".join(json.dumps({"category": "", "desc": "", **r}, ensure_ascii=False) + "\n" for r in ROWS),
                 encoding="utf-8")
    return str(p)


@pytest.mark.parametrize("mode", ["redact", "drop_doc"])
def test_pii_modes_in_the_build(tmp_path, src, mode):
    out = tmp_path / "out"
    build(out, "--vocab_file", "none", "--num_doc_shards", "1", "--pii", mode, inputs=["--input", src])
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stages"]["clean"]["pii"] == {"docs": 2, "email": 1, "id": 1, "mobile": 1}
    docs = {d["id"]: d["text"] for d in read_jsonl_gz(str(out / "docs" / "*.jsonl.gz"))}
    rejects = read_jsonl_gz(str(out / "rejects" / "clean-*.jsonl.gz"))
    # The decoy order number is a Luhn-valid Visa test number: kept as it is.
    assert "订单号4111111111111111已发货" in docs["baike:2"]
    if mode == "redact":
        assert sorted(docs) == ["baike:1", "baike:2", "baike:3"] and rejects == []
        assert "客服电话[mobile]或者发送邮件到[email]咨询" in docs["baike:1"]
        assert "身份证号码是[id]，" in docs["baike:3"]
    else:
        assert sorted(docs) == ["baike:2"]
        assert sorted((r["id"], r["reason"], r["kind"]) for r in rejects) == [
            ("baike:1", "pii", "filtered"), ("baike:3", "pii", "filtered")]
        assert not any("13812345678" in r["excerpt"] or "11010519491231002X" in r["excerpt"] for r in rejects)
        assert stats["reasons"] == {"clean:filtered:pii": 2}
    page = render(str(out))
    assert "Personal data found (clean)" in page
    assert "<tr><th>PII: mobile</th><td>1</td></tr>" in page
