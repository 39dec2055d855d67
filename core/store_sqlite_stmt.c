/*
 * store_sqlite_stmt.c: the SQLite store's statements (store_sqlite_int.h),
 * prepared once per handle on first use (q) and kept until store_close.
 */
#include "store_sqlite_int.h"

const char *const sqlite_sql[Q_COUNT] = {
	[Q_BEGIN] = "BEGIN IMMEDIATE",
	[Q_COMMIT] = "COMMIT",
	[Q_ROLLBACK] = "ROLLBACK",
	[Q_SAVEPOINT] = "SAVEPOINT sp",
	[Q_RELEASE] = "RELEASE sp",
	[Q_ROLLBACK_TO] = "ROLLBACK TO sp",
	[Q_META_GET] = "SELECT value FROM meta WHERE key=?1",
	[Q_META_SET] = "INSERT INTO meta(key,value) VALUES(?1,?2) "
		       "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
	[Q_JOB_INSERT] = "INSERT INTO jobs(" JOB_COLS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,"
			 "?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24)",
	[Q_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id=?1",
	[Q_JOB_GET_C] = "SELECT " JOB_COLS " FROM jobs WHERE id=?1 AND customer=?2",
	[Q_JOB_UPDATE] = "UPDATE jobs SET target_idx=?5,provider=?6,model=?7,status=?8,"
			 "request_id=?9,output=?14,error_code=?15,error_message=?16,data=?17,"
			 "attempt=?18,polls=?19,updated_at=?21,completed_at=?22,"
			 "submit_deadline=?23,deadline=?24 WHERE id=?1",
	[Q_JOB_COUNT] = "SELECT count(*) FROM jobs",
	[Q_IDEM_GET] = "SELECT body_hash,job_id FROM idempotency WHERE customer=?1 AND key=?2",
	[Q_IDEM_PUT] = "INSERT INTO idempotency(customer,key,body_hash,job_id,created_at) "
		       "VALUES(?1,?2,?3,?4,?5)",
	[Q_WORK_ADD] = "INSERT INTO work(job_id,kind,ref,due_at,lease_owner,lease_until,tries) "
		       "VALUES(?1,?2,?3,?4,?5,?6,0)",
	[Q_WORK_CLAIM] = "UPDATE work SET lease_owner=?1, lease_until=?2 WHERE id IN "
			 "(SELECT id FROM work WHERE due_at<=?3 AND lease_until<=?3 "
			 "ORDER BY due_at LIMIT ?4) "
			 "RETURNING id,job_id,kind,ref,due_at,tries",
	[Q_WORK_DONE] = "DELETE FROM work WHERE id=?1",
	[Q_WORK_RESCHED] = "UPDATE work SET due_at=?2, lease_owner=NULL, lease_until=0, tries=?3 WHERE id=?1",
	[Q_WORK_BECOME] = "UPDATE work SET kind=?2, due_at=?3, lease_owner=NULL, lease_until=0, tries=0 WHERE id=?1",
	[Q_WORK_DROP_K] = "DELETE FROM work WHERE job_id=?1 AND kind=?2 AND id<>?3",
	[Q_WORK_DROP_ALL] = "DELETE FROM work WHERE job_id=?1 AND id<>?3 AND kind<>?2",
	[Q_WORK_NEXT] = "SELECT due_at FROM work WHERE lease_until<=?1 ORDER BY due_at LIMIT 1",
	[Q_WORK_RELEASE] = "UPDATE work SET lease_owner=NULL, lease_until=0 "
			   "WHERE lease_owner=?1 OR lease_owner=?1||'#slot'",
	[Q_WORK_RELEASE_P] = "UPDATE work SET lease_owner=NULL, lease_until=0 "
			     "WHERE substr(lease_owner,1,length(?1))=?1",
	[Q_WORK_OWNERS] = "SELECT DISTINCT lease_owner FROM work WHERE lease_owner IS NOT NULL",
	[Q_WORK_COUNT] = "SELECT count(*) FROM work WHERE kind=?1",
	[Q_QUEUE_STATS] = "SELECT COALESCE(SUM(lease_until<=?1 AND due_at<=?1),0),"
			  " COALESCE(SUM(lease_until>?1),0),"
			  " COALESCE(SUM(kind=2 AND lease_until<=?1 AND due_at>?1),0),"
			  " COALESCE(MIN(CASE WHEN lease_until<=?1 AND due_at<=?1 THEN due_at END),0),"
			  " (SELECT page_count*page_size FROM pragma_page_count(), pragma_page_size())"
			  " FROM work",
	[Q_DLV_INSERT] = "INSERT INTO deliveries(id,job_id,event,url,status,attempts,created_at,next_at) "
			 "VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
	[Q_DLV_GET] = "SELECT id,job_id,event,url,status,attempts,created_at,next_at "
		      "FROM deliveries WHERE id=?1",
	[Q_DLV_UPDATE] = "UPDATE deliveries SET status=?5,attempts=?6,next_at=?8 WHERE id=?1",
	[Q_ATT_INSERT] = "INSERT INTO attempts(delivery_id,job_id,at,status_code,latency_ms,error,script_version,body) "
			 "VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
	[Q_DLV_OF_JOB] = "SELECT id,event,url,status,attempts,created_at,next_at FROM deliveries "
			 "WHERE job_id=?1 ORDER BY created_at, id",
	[Q_ATT_OF_DLV] = "SELECT at,status_code,latency_ms,error,script_version,body FROM attempts "
			 "WHERE delivery_id=?1 ORDER BY id",
	[Q_CB_INSERT] = "INSERT INTO callbacks(job_id,provider,at,outcome,body) VALUES(?1,?2,?3,?4,?5)",
	[Q_EV_ADD] = "INSERT INTO events(job_id,at,kind,detail) VALUES(?1,?2,?3,?4)",
	[Q_EV_LIST] = "SELECT at,kind,detail FROM events WHERE job_id=?1 ORDER BY id",
	/* A provider's load: ?1 provider, ?2 now, ?3 row id, ?4 its due_at.
	 * Column 0: in flight (poll rows, and submit rows running with a slot);
	 * column 1: submits waiting ahead of row ?3 (due, not running). */
	[Q_SLOT_COUNT] = "SELECT "
		"coalesce(sum(w.kind=2 OR (w.id<>?3 AND coalesce(w.lease_owner,'') LIKE '%#slot' "
		"AND w.lease_until>?2)),0), "
		"coalesce(sum(w.kind=1 AND w.id<>?3 AND w.due_at<=?2 "
		"AND NOT (coalesce(w.lease_owner,'') LIKE '%#slot' AND w.lease_until>?2) "
		"AND (w.due_at<?4 OR (w.due_at=?4 AND w.id<?3))),0) "
		"FROM work w JOIN jobs j ON j.id=w.job_id WHERE w.kind IN (1,2) AND j.provider=?1",
	[Q_SLOT_TAKE] = "UPDATE work SET lease_owner=coalesce(lease_owner,'')||'#slot' "
			"WHERE id=?1 AND coalesce(lease_owner,'') NOT LIKE '%#slot'",
	[Q_SLOT_HOLD] = "UPDATE work SET lease_owner='cap-wait', lease_until=?2 WHERE id=?1",
	[Q_EV_COUNT] = "SELECT count(*) FROM events WHERE job_id=?1 AND kind=?2",
	[Q_WORK_RENEW] = "UPDATE work SET lease_until=?2 WHERE id=?3 AND lease_owner=?1 AND lease_until>0",
};
