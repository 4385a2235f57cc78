"""the member's default card, kept from Stripe

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_payment_method_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('card_brand', sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column('card_last4', sa.String(length=4), nullable=True))
        batch_op.add_column(sa.Column('card_exp_month', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('card_exp_year', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('card_synced_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('card_synced_at')
        batch_op.drop_column('card_exp_year')
        batch_op.drop_column('card_exp_month')
        batch_op.drop_column('card_last4')
        batch_op.drop_column('card_brand')
        batch_op.drop_column('stripe_payment_method_id')
