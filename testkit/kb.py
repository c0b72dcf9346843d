"""Knowledge-base articles for tests and benchmarks: realistic Chinese service text, and terms no other
article of a shared table holds (so a search in one test never sees another test's articles)."""
from __future__ import annotations

import random
import uuid

# Sentences of the kind a chain's service knowledge base holds (returns, points, coupons, stores).
SENTENCES = (
    "会员在门店消费后，积分会在订单完成后自动到账。",
    "积分有效期为十二个月，到期前七天会通过小程序提醒。",
    "如需退款，请携带小票到原门店或任意门店的服务台办理。",
    "优惠券不可与其他优惠叠加使用，除非券面注明可叠加。",
    "部分退款按比例扣回已获得的积分，已使用的积分计为欠分。",
    "金卡会员享受生日双倍积分，每年可领取一张生日礼券。",
    "门店营业时间以门店公告为准，节假日可能调整。",
    "线上订单可在任意门店自提，请出示取货码。",
    "跨店退换货需要两家门店协作，由受理门店创建工单。",
    "会员等级按近十二个月的累计消费计算，每月初复核一次。",
    "遇到设备故障，请先重启收银机，再联系区域技术支持。",
    "顾客投诉应在两小时内首次回复，并记录处理结果。",
    "兑换商品一经兑换不可退回积分，质量问题除外。",
    "新品上市期间，部分门店提供试饮活动，数量有限。",
    "电话热线受理的问题会自动转入总部客服队列。",
    "会员手机号变更需通过微信验证或由总部客服处理。",
)


def chinese_text(chars: int, seed: int = 0) -> str:
    """About `chars` characters of service text (sentences drawn at random, reproducibly)."""
    rng = random.Random(seed)
    out: list[str] = []
    length = 0
    while length < chars:
        sentence = rng.choice(SENTENCES)
        out.append(sentence)
        length += len(sentence)
    return "".join(out)[:chars]


# Words of the same trade: an article drawn from them has as many distinct bigrams as real prose of its length
# (within words, and across each pair of neighbours), unlike a few sentences repeated.
WORDS = tuple("""
会员 积分 过期 兑换 门店 退款 小票 订单 优惠 券面 叠加 使用 金卡 银卡 生日 礼券 营业 时间 公告 节假 调整 线上
自提 取货 跨店 退货 换货 协作 受理 工单 等级 累计 消费 复核 设备 故障 收银 重启 区域 技术 支持 顾客 投诉 回复
记录 结果 商品 质量 问题 新品 上市 试饮 活动 数量 有限 电话 热线 总部 客服 队列 手机 变更 微信 验证 处理 奶茶
咖啡 果汁 甜品 面包 蛋糕 外卖 配送 骑手 超时 赔付 补偿 发票 开具 抬头 税号 电子 纸质 邮寄 地址 修改 取消 支付
扫码 现金 银行 余额 储值 充值 赠送 返还 到账 延迟 查询 明细 冻结 解冻 账号 注销 隐私 授权 同意 撤回 导出 删除
店长 店员 培训 排班 交接 盘点 库存 调拨 缺货 补货 供应 保质 陈列 卫生 检查 整改 评分 评价 差评 好评 回访 满意
""".split())


def article_text(chars: int, seed: int = 0) -> str:
    """About `chars` characters of prose made of WORDS (sentences of 6 to 14 words), reproducibly."""
    rng = random.Random(seed)
    out: list[str] = []
    length = 0
    while length < chars:
        sentence = "".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + rng.choice("，。；！")
        out.append(sentence)
        length += len(sentence)
    return "".join(out)[:chars]


def unique_han(n: int = 4) -> str:
    """`n` random Han characters (from 20,000): their bigrams are, for practical purposes, in no other article."""
    rng = random.Random(uuid.uuid4().int)
    return "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(n))


def unique_word() -> str:
    """An ASCII term no other article holds."""
    return f"zq{uuid.uuid4().hex[:12]}"
