"""Labelled PII benchmark: generated identifiers in real sentences, plus decoys.

``python bench/pii_bench.py [--corpus ../shared/corpus] [--docs 4000] [--seed 1] [--out bench_out/pii]``

1. Synthetic documents: two to four real sentences from ``--corpus`` with one
   generated identifier (valid or invalid) or decoy put in a realistic context
   (a Q&A answer, a signature, a notice). Every draw comes from
   ``random.Random(f"{seed}:{doc index}")``. The truth is the identifier's span
   when it is a valid one of its type, nothing when it is an invalid one or a
   decoy. Recall and precision per type: a detection is right when its span and
   type equal a truth span's; any other detection is a false positive (in the
   real sentences too; sentences in which the detector already finds something
   are left out of the pool so they cannot add unlabelled truth).
2. The real corpus: every document ``corpusflow.io`` reads from ``--corpus``,
   share of documents touched per source and spans per type.
3. ``OUT/redaction_sample.txt``: real-corpus detections in context (for a person
   to read), then every synthetic false positive and false negative.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import random
import re
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpusflow.document import Document  # noqa: E402
from corpusflow.io.readers import read_file  # noqa: E402
from corpusflow.pii import find_pii  # noqa: E402
from corpusflow.pii import validators as v  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
PROVINCES = sorted(v.PROVINCE_CODES - {"71", "81", "82", "83"})
AREA3 = ["0755", "0571", "0531", "0731", "0451", "0471", "0591", "0898", "0371", "0311"]
AREA2 = ["010", "020", "021", "022", "023", "024", "025", "027", "028", "029"]
DOMAINS = ["163.com", "qq.com", "126.com", "sina.com", "gmail.com", "foxmail.com", "pku.edu.cn",
           "example.com.cn", "company-mail.cn", "outlook.com"]
PLATE_PROV = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

# Contexts: {x} is the identifier. Q&A answers, signatures, notices.
CONTEXTS = {
    "id": ["本人身份证号码：{x}，特此证明。", "申请人：李明，身份证{x}。", "我的身份证号是{x}，请帮我查一下。",
           "证件号码 {x}", "请核对：{x}（身份证）"],
    "mobile": ["您好，可以拨打{x}咨询。", "联系人：张先生 电话：{x}", "如有疑问请致电{x}，工作日9:00-17:00。",
               "手机{x}（微信同号）", "报名热线 {x}"],
    "landline": ["咨询电话：{x}", "办公室座机{x}，传真同号。", "欢迎来电 {x}。", "联系我们：{x}（工作日）"],
    "email": ["简历请发送至{x}。", "联系邮箱：{x}", "有问题发邮件到 {x} 就行", "投稿信箱{x}，请注明栏目。"],
    "ip": ["服务器地址是{x}，端口8080。", "登录IP：{x}", "请把{x}加入白名单。"],
    "bank_card": ["汇款账号：{x}（工商银行）", "请转账到卡号{x}，户名王芳。", "我的银行卡{x}被冻结了怎么办？",
                  "收款卡号 {x}"],
    "qq": ["有问题加QQ：{x}", "QQ {x} 欢迎交流", "联系QQ号{x}。", "官方QQ群：{x}"],
    "wechat": ["加微信：{x}", "微信号 {x}，备注来意。", "VX：{x}"],
    "passport": ["护照号码：{x}", "护照号{x}，有效期至2030年。", "Passport No. {x}"],
    "plate": ["车牌号{x}的车主请挪车。", "肇事车辆（{x}）已被扣押。", "一辆{x}的白色轿车"],
}
DECOY_CONTEXTS = ["订单号：{x}，已发货。", "快递单号{x}", "股票代码{x}今日涨停。", "售价{x}元。", "ISBN {x}",
                  "编号：{x}", "会议时间{x}。", "{x}", "流水号{x}", "版本{x}发布。"]


def luhn_complete(body: str) -> str:
    for d in "0123456789":
        if v.luhn_valid(body + d):
            return body + d
    raise AssertionError


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def gen_id(rng: random.Random) -> str:
    while True:
        body = (rng.choice(PROVINCES) + digits(rng, 4) + f"{rng.randint(1940, 2010):04d}"
                + f"{rng.randint(1, 12):02d}" + f"{rng.randint(1, 28):02d}" + digits(rng, 3))
        return body + v.id_check_char(body)


def gen_valid(kind: str, rng: random.Random) -> str:
    if kind == "id":
        x = gen_id(rng)
        if rng.random() < 0.1:  # a spaced 6-8-4 form
            x = f"{x[:6]} {x[6:14]} {x[14:]}"
        return x
    if kind == "mobile":
        n = "1" + rng.choice("3456789") + digits(rng, 9)
        f = rng.randrange(5)
        return [n, f"{n[:3]}-{n[3:7]}-{n[7:]}", f"{n[:3]} {n[3:7]} {n[7:]}", "+86 " + n, "0086-" + n][f]
    if kind == "landline":
        if rng.random() < 0.5:
            a, local = rng.choice(AREA2), rng.choice("2345678") + digits(rng, 7)
        else:
            a, local = rng.choice(AREA3), rng.choice("2345678") + digits(rng, rng.choice((6, 7)))
        return [f"{a}-{local}", f"({a}){local}", f"{a} {local}", f"{a}-{local}转{rng.randint(100, 999)}"][rng.randrange(4)]
    if kind == "email":
        user = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(3, 12)))
        if rng.random() < 0.3:
            user += rng.choice("._") + "".join(rng.choice(string.ascii_lowercase) for _ in range(4))
        return f"{user}@{rng.choice(DOMAINS)}"
    if kind == "ip":
        if rng.random() < 0.75:
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        groups = [f"{rng.randint(0, 0xffff):x}" for _ in range(8)]
        return "2001:db8:" + ":".join(groups[2:]) if rng.random() < 0.5 else f"fe80::{groups[0]}:{groups[1]}"
    if kind == "bank_card":
        prefix = rng.choice(["622202", "622848", "621700", "622588", "436742", "625094", "524047", "955880"])
        n = luhn_complete(prefix + digits(rng, rng.choice((16, 19)) - len(prefix) - 1))
        return " ".join(n[i:i + 4] for i in range(0, len(n), 4)) if rng.random() < 0.3 else n
    if kind == "qq":
        return str(rng.randint(10000, 3999999999))
    if kind == "wechat":
        return rng.choice(string.ascii_letters) + "".join(
            rng.choice(string.ascii_letters + string.digits + "_-") for _ in range(rng.randint(5, 15)))
    if kind == "passport":
        return rng.choice(["E", "G", "EA", "EB"]) + digits(rng, 8 if rng.random() < 0.7 else 7)
    if kind == "plate":
        tail = "".join(rng.choice(string.digits) for _ in range(5))
        if rng.random() < 0.3:
            pos = rng.randrange(5)
            tail = tail[:pos] + rng.choice(PLATE_LETTERS) + tail[pos + 1:]
        return rng.choice(PLATE_PROV) + rng.choice(PLATE_LETTERS) + tail
    raise KeyError(kind)


def gen_invalid(kind: str, rng: random.Random) -> str:
    """An identifier of ``kind`` that fails its validator: must not be detected."""
    if kind == "id":
        good = gen_id(rng)
        f = rng.randrange(3)
        if f == 0:  # wrong checksum
            return good[:17] + rng.choice([c for c in "0123456789X" if c != good[17]])
        if f == 1:  # impossible date (month 13), checksum recomputed
            body = good[:10] + "13" + good[12:17]
            return body + v.id_check_char(body)
        body = "9" + rng.choice("0789") + good[2:17]  # no such province
        return body + v.id_check_char(body)
    if kind == "mobile":  # phone-like runs inside longer numbers, or a 12 prefix
        n = "1" + rng.choice("3456789") + digits(rng, 9)
        return [n + digits(rng, 3), digits(rng, 2) + n, "12" + digits(rng, 9)][rng.randrange(3)]
    if kind == "bank_card":
        n = gen_valid("bank_card", rng).replace(" ", "")
        return n[:-1] + str((int(n[-1]) + rng.randint(1, 9)) % 10)  # Luhn broken
    if kind == "email":
        return "user@localhost" if rng.random() < 0.5 else "name@@example.com"
    if kind == "ip":
        return ".".join(str(rng.randint(256, 999)) for _ in range(4))
    raise KeyError(kind)


def gen_decoy(rng: random.Random) -> str:
    f = rng.randrange(11)
    if f == 10:  # a long number of any prefix (order, transaction, parcel) in any context
        return rng.choice("123456789") + digits(rng, rng.randint(15, 18))
    if f == 0:
        return str(rng.randint(600000, 603999))  # stock code
    if f == 1:
        return f"{rng.randint(1, 99999)}.{rng.randint(0, 99):02d}"  # price
    if f == 2:
        return f"978-7-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.randint(0, 9)}"  # ISBN
    if f == 3:
        return "20" + digits(rng, rng.randint(14, 18))  # order number
    if f == 4:
        return rng.choice(["SF", "YT", "JD"]) + digits(rng, 12)  # tracking number
    if f == 5:
        return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
    if f == 6:
        return digits(rng, 8)  # a bare 8-digit number (QQ-like, no label)
    if f == 7:
        return f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 20)}"  # version
    if f == 8:
        return "1" + rng.choice("3456789") + digits(rng, 9) + digits(rng, rng.randint(3, 8))  # long run
    return str(rng.randint(1, 99999))


def sentence_pool(corpus: Path, limit: int = 20000) -> list[str]:
    """Real sentences (10-80 characters, mostly CJK) with nothing the detector finds."""
    out: list[str] = []
    paths = sorted(glob.glob(str(corpus / "baike" / "*.jsonl")) + glob.glob(str(corpus / "wiki" / "*.jsonl"))
                   + glob.glob(str(corpus / "news" / "*.txt")))
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for p in paths:
        for rec in read_file(p):
            if not isinstance(rec, Document):
                continue
            for s in re.findall(r"[^。！？\n]{10,80}[。！？]", rec.text):
                s = s.strip()
                if len(cjk.findall(s)) >= 0.6 * len(s) and not find_pii(s):
                    out.append(s)
            if len(out) >= limit:
                return out
    return out


KINDS = list(CONTEXTS)
INVALID_KINDS = ["id", "mobile", "bank_card", "email", "ip"]


def synth(pool: list[str], n_docs: int, seed: int):
    """Yield (text, truth spans [(start, end, type)], what was planted)."""
    for i in range(n_docs):
        rng = random.Random(f"{seed}:{i}")
        before = "".join(rng.choice(pool) for _ in range(rng.randint(1, 2)))
        after = "".join(rng.choice(pool) for _ in range(rng.randint(1, 2)))
        r = rng.random()
        if r < 0.6:
            kind = rng.choice(KINDS)
            x, ctx, valid = gen_valid(kind, rng), rng.choice(CONTEXTS[kind]), True
        elif r < 0.8:
            kind = rng.choice(INVALID_KINDS)
            ctx = rng.choice(CONTEXTS.get(kind, ["{x}"]))
            x, valid = gen_invalid(kind, rng), False
        else:
            kind, x, ctx, valid = "decoy", gen_decoy(rng), rng.choice(DECOY_CONTEXTS), False
        pre, post = ctx.split("{x}")
        # A signature or notice line that ends with the identifier ends the line:
        # glued to a following sentence that starts with a digit or a Latin letter,
        # where the identifier ends is ambiguous even to a person.
        post = post or "\n"
        text = before + pre + x + post + after
        start = len(before) + len(pre)
        yield text, ([(start, start + len(x), kind)] if valid else []), (kind, valid, x, start)


def evaluate(pool: list[str], n_docs: int, seed: int, sample: list[str]) -> dict:
    tp: collections.Counter = collections.Counter()
    fp: collections.Counter = collections.Counter()
    fn: collections.Counter = collections.Counter()
    planted: collections.Counter = collections.Counter()
    hit_invalid: collections.Counter = collections.Counter()
    for text, truth, (kind, valid, x, at) in synth(pool, n_docs, seed):
        planted[f"{kind}:{'valid' if valid else 'invalid/decoy'}"] += 1
        found = {(s.start, s.end, s.type) for s in find_pii(text)}
        if not valid and any(a < at + len(x) and at < b for a, b, _ in found):
            hit_invalid[kind] += 1  # an invalid identifier or a decoy was (partly) redacted
        want = set(truth)
        for t in want & found:
            tp[t[2]] += 1
        for t in found - want:
            fp[t[2]] += 1
            sample.append(f"FP {t[2]} ({kind}, planted {x!r}): {text[max(0, t[0] - 20):t[1] + 20]}  "
                          f"<<{text[t[0]:t[1]]}>>")
        for t in want - found:
            fn[t[2]] += 1
            sample.append(f"FN {t[2]} (planted {x!r}): {text[max(0, t[0] - 20):t[1] + 20]}")
    per = {}
    for k in KINDS:
        det = tp[k] + fp[k]
        tru = tp[k] + fn[k]
        per[k] = {"truth": tru, "detected": det, "tp": tp[k],
                  "recall": round(tp[k] / tru, 4) if tru else None,
                  "precision": round(tp[k] / det, 4) if det else None}
    untouched = {k: round(1 - hit_invalid[k] / n, 4) for k, n in
                 ((p.split(":")[0], n) for p, n in planted.items() if p.endswith("invalid/decoy"))}
    return {"per_type": per, "planted": dict(sorted(planted.items())), "invalid_untouched": untouched}


def real_corpus(corpus: Path, sample: list[str], per_type_sample: int = 25) -> dict:
    docs: collections.Counter = collections.Counter()
    touched: collections.Counter = collections.Counter()
    spans: collections.Counter = collections.Counter()
    shown: collections.Counter = collections.Counter()
    chars = 0
    t0 = time.process_time()
    for p in sorted(glob.glob(str(corpus / "**" / "*"), recursive=True)):
        if not os.path.isfile(p) or p.endswith(".md"):
            continue
        for rec in read_file(p):
            if not isinstance(rec, Document):
                continue
            docs[rec.source] += 1
            chars += len(rec.text)
            found = find_pii(rec.text)
            if found:
                touched[rec.source] += 1
            for s in found:
                spans[s.type] += 1
                if shown[s.type] < per_type_sample:
                    shown[s.type] += 1
                    t = rec.text
                    sample.append(f"REAL {s.type} {rec.id}: {t[max(0, s.start - 25):s.start]}<<{t[s.start:s.end]}>>"
                                  f"{t[s.end:s.end + 15]}".replace("\n", " "))
    cpu = time.process_time() - t0
    return {"docs": dict(docs), "touched": dict(touched),
            "share_touched": {k: round(touched[k] / n, 4) for k, n in docs.items()},
            "share_touched_all": round(sum(touched.values()) / max(1, sum(docs.values())), 4),
            "spans": dict(spans.most_common()), "chars": chars,
            "detect_mchars_per_cpu_s": round(chars / cpu / 1e6, 2) if cpu else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ap.add_argument("--docs", type=int, default=4000, help="synthetic documents")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="bench_out/pii")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)
    if not corpus.is_dir():
        print(f"pii_bench: {corpus} not found", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    synth_sample: list[str] = []
    real_sample: list[str] = []
    pool = sentence_pool(corpus)
    res = {"sentences": len(pool), "synthetic": evaluate(pool, args.docs, args.seed, synth_sample),
           "real": real_corpus(corpus, real_sample)}
    with open(os.path.join(args.out, "redaction_sample.txt"), "w", encoding="utf-8") as f:
        f.write("# real corpus: detections in context (<<span>> is what redact replaces)\n")
        f.write("\n".join(real_sample) + "\n\n# synthetic: false positives (FP) and false negatives (FN)\n")
        f.write("\n".join(synth_sample) + "\n")
    with open(os.path.join(args.out, "pii_bench.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, ensure_ascii=False, indent=1)
    print(f"{len(pool)} real sentences, {args.docs} synthetic documents (seed {args.seed})")
    print(f"{'type':10} {'truth':>6} {'found':>6} {'recall':>7} {'precision':>9}")
    for k, r in res["synthetic"]["per_type"].items():
        print(f"{k:10} {r['truth']:6d} {r['detected']:6d} {r['recall']!s:>7} {r['precision']!s:>9}")
    print(f"invalid identifiers and decoys left untouched, by planted kind: {res['synthetic']['invalid_untouched']}")
    real = res["real"]
    print(f"real corpus: {sum(real['docs'].values())} documents, {real['share_touched_all']:.2%} touched; "
          f"per source {real['share_touched']}; spans {real['spans']}; "
          f"{real['detect_mchars_per_cpu_s']} M chars per CPU-s")
    print(f"sample for review: {os.path.join(args.out, 'redaction_sample.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
