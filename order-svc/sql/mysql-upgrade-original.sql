-- Upgrading the original system's MySQL database (`changgou_order`) for order-svc by hand,
-- for operators who run order-svc with DB_MIGRATE=false. Starting order-svc once with
-- DB_MIGRATE=true does the same (and only what is missing).

-- Payments that could not be applied (order paid by another transaction, closed, or in a state
-- order-svc does not pay from; or the transaction already paid another order), once each.
CREATE TABLE IF NOT EXISTS `pay_anomaly` (
  `order_id` varchar(200) NOT NULL,
  `transaction_id` varchar(32) NOT NULL,
  `kind` varchar(32) NOT NULL,
  `amount_fen` bigint NOT NULL,
  `detected_at` datetime NOT NULL,
  PRIMARY KEY (`order_id`, `transaction_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Some copies of tb_order_log lack `money`; uncomment when yours does:
-- ALTER TABLE `tb_order_log` ADD COLUMN `money` int NULL;

-- The original DDL's `tb_order.transaction_id` (varchar(30)) and `tb_order_log.order_id`
-- (varchar(20), or bigint(20) in some copies) are narrower than what order-svc writes: WeChat's
-- transaction ids have up to 32 characters, order ids up to 32 (`tb_order.id` is varchar(200)).
-- Widened, never narrowed, in the table's own character set; tb_order_log is rebuilt once.
ALTER TABLE `tb_order` MODIFY `transaction_id` varchar(32) DEFAULT NULL COMMENT '交易流水号';
ALTER TABLE `tb_order_log` MODIFY `order_id` varchar(200) DEFAULT NULL COMMENT '订单ID';

-- Log lookups by order, one payment per WeChat transaction, and the reconciliation scan.
CREATE INDEX `idx_tb_order_log_order_id` ON `tb_order_log` (`order_id`);
CREATE UNIQUE INDEX `uk_tb_order_transaction_id` ON `tb_order` (`transaction_id`);
CREATE INDEX `idx_tb_order_pending` ON `tb_order` (`pay_status`, `order_status`, `create_time`);
