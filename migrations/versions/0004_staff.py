"""staff: comps and the audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=80), nullable=False),
    sa.Column('target_type', sa.String(length=40), nullable=False),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('before', sa.Text(), nullable=True),
    sa.Column('after', sa.Text(), nullable=True),
    sa.Column('ip_address', sa.String(length=45), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['members.id'], name=op.f('fk_audit_entries_actor_id_members'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_actor_id', ['actor_id'], unique=False)
        batch_op.create_index('ix_audit_entries_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_audit_entries_target', ['target_type', 'target_id'], unique=False)

    op.create_table('comps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('tier_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('granted_by_id', sa.Integer(), nullable=True),
    sa.Column('ended_early_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_comps_ends_after_start')),
    sa.ForeignKeyConstraint(['granted_by_id'], ['members.id'], name=op.f('fk_comps_granted_by_id_members'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_comps_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_comps_tier_id_tiers'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comps'))
    )
    with op.batch_alter_table('comps', schema=None) as batch_op:
        batch_op.create_index('ix_comps_member_id', ['member_id'], unique=False)

    create_append_only_triggers()


# The audit log is append-only, enforced by the database: UPDATE and DELETE are refused. The one
# update allowed is the foreign key's own ON DELETE SET NULL (actor_id cleared, nothing else).
AUDIT_COLUMNS = ('id', 'action', 'target_type', 'target_id', 'before', 'after', 'ip_address', 'created_at')


def create_append_only_triggers():
    if op.get_bind().dialect.name == 'postgresql':
        same = ' AND '.join(f'NEW.{c} IS NOT DISTINCT FROM OLD.{c}' for c in AUDIT_COLUMNS)
        op.execute(f"""
            CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'UPDATE' AND NEW.actor_id IS NULL AND {same} THEN
                    RETURN NEW;
                END IF;
                RAISE EXCEPTION 'audit_entries is append-only: % refused', TG_OP;
            END;
            $$
        """)
        op.execute(
            'CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries '
            'FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()'
        )
    else:
        same = ' AND '.join(f'NEW.{c} IS OLD.{c}' for c in AUDIT_COLUMNS)
        op.execute(f"""
            CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
            WHEN NOT (NEW.actor_id IS NULL AND {same})
            BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only: UPDATE refused'); END
        """)
        op.execute("""
            CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
            BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only: DELETE refused'); END
        """)


def drop_append_only_triggers():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS audit_entries_append_only ON audit_entries')
        op.execute('DROP FUNCTION IF EXISTS audit_entries_append_only()')
    else:
        op.execute('DROP TRIGGER IF EXISTS audit_entries_no_update')
        op.execute('DROP TRIGGER IF EXISTS audit_entries_no_delete')



def downgrade():
    drop_append_only_triggers()
    with op.batch_alter_table('comps', schema=None) as batch_op:
        batch_op.drop_index('ix_comps_member_id')

    op.drop_table('comps')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_target')
        batch_op.drop_index('ix_audit_entries_created_at')
        batch_op.drop_index('ix_audit_entries_actor_id')

    op.drop_table('audit_entries')
